/**
 * An attack trial of the late changes to the exchange and introspection clients (catalogue I7,
 * I19, X32): client credentials read against the request's 5 s deadline, also the re-read after an
 * `invalid_client` that asks whether the credentials rotated.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Controller, Get } from '@nestjs/common';
import { gcpMetadataSource, RequireFreshness, RequireScopes, TokenExchangeError, WorkloadIdentity } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { startExchangeContext } from './support/exchange-context.js';
import { bearer, R } from './support/forge.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

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
