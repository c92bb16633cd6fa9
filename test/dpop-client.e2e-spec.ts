/**
 * The agent side of DPoP (catalogue H29–H31): the token exchange asks the real local zone for
 * DPoP-bound tokens (RFC 9449 §5, §8), and `dpopFetch` presents them to a real DPoP resource server
 * that demands nonces (§7.1, §9).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { Controller, Get } from '@nestjs/common';
import { Access, type AccessContext, ClientCredentialsService, DpopKey, dpopFetch, Grant, TokenExchangeError } from '../lib/index.js';
import { accessTokenHash } from '../lib/dpop/dpop-proof.js';
import { TestZone } from '../lib/testing/index.js';
import { startExchangeContext } from './support/exchange-context.js';
import { R } from './support/forge.js';
import { send } from './support/http.js';
import { dpopHeaders } from './support/dpop.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

const SECRET = 's3cret-value-1234';
const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>;

describe('DPoP-bound tokens from the token exchange (H29, H30)', () => {
  let zone: TestZone;
  let agent: Awaited<ReturnType<typeof startExchangeContext>>;
  const key = DpopKey.generate();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: 'https://agent.example.com', resources: { [R]: ['orders:read'] }, clients: [{ clientId: 'agent-a', clientSecret: SECRET }] });
  });
  afterEach(async () => {
    await agent?.close();
    zone.reset();
    zone.dpop = { bind: true };
  });
  afterAll(async () => {
    await zone?.stop();
  });

  const start = async () => {
    agent = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET } });
    return agent;
  };
  const subject = () => zone.tokenFor({ user: 'alice', scopes: ['orders:read'] });
  const proofs = () => zone.tokenRequests.map((r) => r.headers.dpop as string | undefined);

  it('H29 the exchange sends a proof (POST, the token_endpoint, fresh jti, no ath), gets token_type DPoP, caches per key', async () => {
    const { service } = await start();
    const subjectToken = subject();
    const token = await service.exchange({ subjectToken, resource: R, scope: 'orders:read', dpop: key });
    expect(token.tokenType).toBe('DPoP');
    expect(claimsOf(token.accessToken).cnf).toEqual({ jkt: key.thumbprint });
    const [proof] = proofs();
    const header = JSON.parse(Buffer.from(proof!.split('.')[0], 'base64url').toString('utf8')) as Record<string, unknown>;
    expect(header).toMatchObject({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk });
    const claims = claimsOf(proof!);
    expect(claims).toMatchObject({ htm: 'POST', htu: `${zone.origin}/token`, jti: expect.any(String) });
    expect(claims).not.toHaveProperty('ath');
    expect(await service.exchange({ subjectToken, resource: R, scope: 'orders:read', dpop: key })).toBe(token);
    expect(zone.counts.token).toBe(1);
    const bearer = await service.exchange({ subjectToken, resource: R, scope: 'orders:read' });
    expect(bearer.tokenType).toBe('Bearer');
    expect(zone.counts.token).toBe(2);
    expect(agent.logger.lines.join('\n')).not.toContain(subjectToken);
  });

  it('H30 (a) use_dpop_nonce → exactly one retry carrying the nonce', async () => {
    zone.dpop = { bind: true, nonce: `n-${randomBytes(4).toString('hex')}` };
    const { service } = await start();
    const token = await service.exchange({ subjectToken: subject(), resource: R, dpop: key });
    expect(token.tokenType).toBe('DPoP');
    expect(zone.counts.token).toBe(2);
    const [first, second] = proofs().map((p) => claimsOf(p!));
    expect(first.nonce).toBeUndefined();
    expect(second.nonce).toBe(zone.dpop.nonce);
    expect(second.jti).not.toBe(first.jti);
  });

  it('H30 (b) a Bearer answer with required: true → invalid_response "not DPoP-bound", not cached', async () => {
    zone.dpop = { bind: false };
    const { service } = await start();
    const subjectToken = subject();
    const ask = () => service.exchange({ subjectToken, resource: R, dpop: { key, required: true } });
    const error = await ask().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenExchangeError);
    expect((error as TokenExchangeError).kind).toBe('invalid_response');
    expect((error as Error).message).toContain('not DPoP-bound');
    await ask().catch(() => undefined);
    expect(zone.counts.token).toBe(2);
  });

  it('H30 (c) a Bearer answer without required → accepted, tokenType Bearer, one warning line', async () => {
    zone.dpop = { bind: false };
    const { service, logger } = await start();
    const token = await service.exchange({ subjectToken: subject(), resource: R, dpop: key });
    expect(token.tokenType).toBe('Bearer');
    expect(logger.lines.filter((l) => l.includes('not bound to the key'))).toHaveLength(1);
    expect(logger.lines.join('\n')).not.toContain(token.accessToken);
  });

  it('H30 (d) a DPoP answer to an exchange that sent no proof → invalid_response "DPoP-bound", not cached, nothing leaked', async () => {
    const bound = zone.issueToken({ sub: 'alice', cnf: { jkt: key.thumbprint } });
    zone.faults.token = { kind: 'json', body: { access_token: bound, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'DPoP', expires_in: 300 } };
    const { service, logger } = await start();
    const subjectToken = subject();
    const ask = () => service.exchange({ subjectToken, resource: R });
    const error = await ask().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenExchangeError);
    expect(error).toMatchObject({ kind: 'invalid_response', status: 200 });
    expect((error as Error).message).toContain('DPoP-bound');
    expect((error as Error).message).not.toContain(bound);
    await ask().catch(() => undefined);
    expect(zone.counts.token).toBe(2);
    expect(logger.lines.join('\n')).not.toContain(bound);
    expect(logger.lines.join('\n')).not.toContain(subjectToken);
  });

  it('H29 ClientCredentialsService asks for a DPoP-bound token the same way', async () => {
    const { context } = await start();
    const token = await context.get(ClientCredentialsService).token({ resource: R, dpop: key });
    expect(token.tokenType).toBe('DPoP');
    expect(claimsOf(token.accessToken).cnf).toEqual({ jkt: key.thumbprint });
  });
});

describe('dpopFetch against a DPoP resource server with nonces (H31)', () => {
  let zone: TestZone;
  let api: RunningApp;
  const key = DpopKey.generate();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'required', nonce: { keys: [{ id: 'n1', key: randomBytes(32) }] } } });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('H31 a 401 use_dpop_nonce → exactly one retry with the nonce and a new jti; ath is the token hash', async () => {
    const sent: { url: string; dpop: string }[] = [];
    // The API's public origin is R; the request itself goes to the app on loopback.
    const call = dpopFetch(key, {
      fetch: (url, init) => {
        sent.push({ url, dpop: new Headers(init?.headers).get('dpop')! });
        return globalThis.fetch(url.replace(R, api.url), init);
      },
    });
    const accessToken = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const res = await call(`${R}/orders?page=1`, { accessToken });
    expect(res.status).toBe(200);
    expect(sent).toHaveLength(2);
    const [first, second] = sent.map((s) => claimsOf(s.dpop));
    expect(first.nonce).toBeUndefined();
    expect(second.nonce).toEqual(expect.any(String));
    expect(second.jti).not.toBe(first.jti);
    expect(second).toMatchObject({ htm: 'GET', htu: `${R}/orders`, ath: accessTokenHash(accessToken) });
    expect((await call(`${R}/orders`, { accessToken })).status).toBe(200); // the nonce is remembered
    expect(sent).toHaveLength(3);
  });
});

describe('@Grant on a request admitted with the DPoP scheme', () => {
  const UP = 'https://upstream.example.com';
  let zone: TestZone;
  let api: RunningApp;
  const key = DpopKey.generate();

  @Controller()
  class ProxyController {
    @Get('orders')
    @Grant(UP, 'up:read')
    orders(@Access() access: AccessContext) {
      return { status: access.status, scope: access.has(UP) ? access.access(UP).scope : access.errors[UP].reason };
    }
  }

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, resources: { [UP]: ['up:read'] }, clients: [{ clientId: 'agent-a', clientSecret: SECRET }] });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R, dpop: 'allowed', clientCredentials: { clientId: 'agent-a', clientSecret: SECRET } }, { controllers: [ProxyController] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('exchanges the inbound DPoP-bound token the guard verified (the DPoP scheme is read back like Bearer)', async () => {
    const token = zone.tokenFor({ user: 'alice', dpopKey: key });
    const res = await send(api.url, 'GET', '/orders', dpopHeaders(key, token));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'success', scope: 'up:read' });
    expect(zone.tokenRequests.at(-1)?.form.subject_token).toBe(token);
  });
});
