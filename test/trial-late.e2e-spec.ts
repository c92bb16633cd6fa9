/**
 * An attack trial of the late changes to the exchange and introspection clients (catalogue I7,
 * I19, X32): client credentials read against the request's 5 s deadline, also the re-read after an
 * `invalid_client` that asks whether the credentials rotated.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Controller, Get } from '@nestjs/common';
import { gcpMetadataSource, RequireFreshness, RequireScopes, TokenExchangeError, tokenFileSource, WorkloadIdentity } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { startExchangeContext } from './support/exchange-context.js';
import { GrantedController, UP } from './support/granted-controller.js';
import { bearer, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

@Controller()
class FreshController {
  @Get('fresh')
  @RequireFreshness()
  @RequireScopes('read')
  fresh() {
    return { fresh: true };
  }
}

/** A source that answers `first` once, then never answers (a sidecar that died after one read). */
function answersOnceThenHangs(first: string): () => Promise<string> {
  let reads = 0;
  return () => (reads++ === 0 ? Promise.resolve(first) : new Promise<string>(() => undefined));
}

describe('trial-late: the re-read after invalid_client (credentialsChanged) counts against the deadline (I7, I19, X32)', () => {
  let zone: TestZone;
  let agent: Awaited<ReturnType<typeof startExchangeContext>> | undefined;
  let app: RunningApp | undefined;
  beforeAll(async () => {
    zone = await TestZone.start({
      audience: R,
      resources: { [R]: ['read'] },
      clients: [{ clientId: 'wi', acceptAssertion: () => false }],
    });
  });
  afterEach(async () => {
    await agent?.close();
    await app?.close();
    agent = app = undefined;
    zone.reset();
  });
  afterAll(async () => {
    await zone?.stop();
  });

  it('exchange: refused invalid_client, then a source that never answers → unavailable at the deadline, not held for ever', async () => {
    agent = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials: new WorkloadIdentity({ source: answersOnceThenHangs('wi-v1-do-not-log'), clientId: 'wi' }) });
    const subjectToken = zone.tokenFor({ user: 'alice', scopes: ['read'] });
    const failure = await agent.service.exchange({ subjectToken, resource: R }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(TokenExchangeError);
    expect((failure as TokenExchangeError).kind).toBe('unavailable');
    expect(zone.counts.token).toBe(1);
    expect(agent.logger.lines.join('\n')).not.toMatch(/do-not-log|alice/);
    expect(agent.logger.lines.join('\n')).not.toContain(subjectToken);
  }, 15_000);

  it.each([
    ['rejects', () => Promise.reject(new Error('custom-auth-secret-do-not-log'))],
    ['throws', () => {
      throw new Error('custom-auth-secret-do-not-log');
    }],
  ])('exchange: a custom ClientAuthentication whose authenticate %s a plain Error → TokenExchangeError config without its message, the API 500 misconfigured, nothing logged of it', async (_how, authenticate) => {
    const clientCredentials = { authenticate } as unknown as WorkloadIdentity;
    agent = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials });
    const subjectToken = zone.tokenFor({ user: 'alice', scopes: ['read'] });
    const failure = await agent.service.exchange({ subjectToken, resource: R }).then(() => undefined, (error: unknown) => error);
    expect(failure).toBeInstanceOf(TokenExchangeError);
    expect((failure as TokenExchangeError).kind).toBe('config');
    expect(String((failure as Error).message)).not.toContain('do-not-log');
    expect(zone.counts.token).toBe(0);
    await agent.close();
    agent = undefined;
    app = await startApp('express', { zoneUrl: zone.issuer, resource: R, clientCredentials }, { controllers: [GrantedController] });
    const token = zone.tokenFor({ user: 'alice', scopes: ['read'] });
    const res = await send(app.url, 'GET', '/granted', bearer(token));
    expect(res.status).toBe(500);
    expect(res.json).toEqual({ error: 'server_error', error_description: 'The service is misconfigured' });
    expect(`${res.text}\n${app.logger.lines.join('\n')}`).not.toMatch(/do-not-log/);
  });

  it('introspection: refused invalid_client, then a source that never answers → 503 with Retry-After at the deadline', async () => {
    app = await startApp('express', { zoneUrl: zone.issuer, resource: R, clientCredentials: new WorkloadIdentity({ source: answersOnceThenHangs('wi-v1-do-not-log'), clientId: 'wi' }) }, { controllers: [FreshController] });
    const token = zone.issueToken({ scope: 'read' });
    const res = await send(app.url, 'GET', '/fresh', bearer(token));
    expectOutcome(res, '503 RA', undefined, [token, 'do-not-log'], app.logger.lines);
    expect(zone.introspection.requests).toHaveLength(1);
  }, 15_000);

  it('introspection: a workload token source that is unavailable (the metadata server answers 503) → 503 with Retry-After, not 500 misconfigured', async () => {
    const metadata = createServer((_req, res) => res.writeHead(503, { 'metadata-flavor': 'Google' }).end('busy'));
    await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
    try {
      const source = gcpMetadataSource({ audience: zone.issuer, baseUrl: `http://127.0.0.1:${(metadata.address() as AddressInfo).port}` });
      app = await startApp('express', { zoneUrl: zone.issuer, resource: R, clientCredentials: new WorkloadIdentity({ source, clientId: 'wi' }) }, { controllers: [FreshController] });
      const token = zone.issueToken({ scope: 'read' });
      const res = await send(app.url, 'GET', '/fresh', bearer(token));
      expectOutcome(res, '503 RA', undefined, [token], app.logger.lines);
      expect(zone.introspection.requests).toHaveLength(0);
      expect(app.logger.lines.join('\n')).not.toContain('misconfigured');
    } finally {
      await new Promise((resolve) => metadata.close(resolve));
    }
  });
});

describe('trial-late: a token file (I4, I6)', () => {
  it('a symlink to a regular file is read (the kubelet swaps symlinks); one to /dev/zero is refused; 64 KiB is read, 64 KiB + 1 refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keycard-late-'));
    try {
      writeFileSync(join(dir, 'token'), 'wi-file-token\n');
      symlinkSync(join(dir, 'token'), join(dir, 'linked'));
      symlinkSync('/dev/zero', join(dir, 'zero'));
      writeFileSync(join(dir, 'exact'), 'x'.repeat(64 * 1024));
      writeFileSync(join(dir, 'over'), 'x'.repeat(64 * 1024 + 1));
      const kind = (name: string) => tokenFileSource(join(dir, name)).read().then((t) => t.length, (e: unknown) => (e instanceof TokenExchangeError ? e.kind : e));
      expect(await kind('linked')).toBe('wi-file-token'.length);
      expect(await kind('exact')).toBe(64 * 1024);
      expect(await kind('zero')).toBe('config');
      expect(await kind('over')).toBe('config');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The zone's Retry-After on a 503 → [the API's Retry-After, POSTs to the zone] (I18): one retry when the wait fits the deadline. */
const RETRY_AFTERS: [string, string, number][] = [
  ['Sun, 06 Nov 1994 08:49:37 GMT', '1', 2], // an HTTP-date in the past: retry at once
  ['0', '1', 2],
  [' 120 ', '120', 1],
  ['1234567', '1', 2], // 7 digits: not understood, a jittered retry
  ['-5', '1', 2],
  ['Fri, 31 Dec 9999 23:59:59 GMT', '300', 1], // capped
  ['Sun, 06 Nov 1994 08:49:37 UTC', '1', 2], // not an HTTP-date
];

describe.each(ADAPTERS)('trial-late: the zone\'s Retry-After and the API\'s (I18) over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, resources: { [R]: ['orders:read'], [UP]: ['up:read'] }, clients: [{ clientId: 'agent-a', clientSecret: 'late-secret-1234' }] });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'agent-a', clientSecret: 'late-secret-1234' } }, { controllers: [GrantedController] });
  });
  afterEach(() => zone.reset());
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it.each(RETRY_AFTERS)('Retry-After %j → %s, %d POST(s)', async (value, retryAfter, posts) => {
    zone.faults.token = { kind: 'status', status: 503, headers: { 'retry-after': value }, body: '{"error":"temporarily_unavailable"}' };
    const token = zone.tokenFor({ user: 'alice', scopes: ['orders:read'] });
    const res = await send(api.url, 'GET', '/granted', bearer(token));
    expectOutcome(res, '503 RA', undefined, [token, 'late-secret-1234'], api.logger.lines);
    expect(res.headers['retry-after']).toBe(retryAfter);
    expect(zone.counts.token).toBe(posts);
  });
});
