/**
 * An attack trial of the token-exchange client (catalogue §I, H30, Q8, Q40): what a zone may answer
 * and what the API then answers its caller, over Express and Fastify, against a real TestZone on
 * loopback; and how long, and to whom, an exchanged token is served from the cache.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { DpopKey, TokenExchangeError, WorkloadIdentity } from '../lib/index.js';
import { TestZone, type ZoneFault } from '../lib/testing/index.js';
import { startExchangeContext } from './support/exchange-context.js';
import { GrantedController, UP } from './support/granted-controller.js';
import { R } from './support/forge.js';
import { parseChallenge, send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

const SECRET = 's3cret-value-1234';
const PRM = `${R}/.well-known/oauth-protected-resource`;
const TOKEN_RESPONSE = { access_token: 'exchanged-a', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer' };

const BAD_GATEWAY = { error: 'bad_gateway', error_description: 'The authorization server answered unexpectedly' };

/** Zone answer → [status, body, challenge params or undefined, Retry-After, POSTs the zone saw] (catalogue Q8). */
const ANSWERS: [string, ZoneFault, number, object, Record<string, string> | undefined, string | undefined, number][] = [
  ['I13 invalid_grant (description with markup and CRLF)', { kind: 'status', status: 400, body: '{"error":"invalid_grant","error_description":"<b>x</b>\\r\\nSet-Cookie: a=b"}' }, 401,
    { error: 'invalid_token', error_description: 'The access token is not active' }, { error: 'invalid_token', error_description: 'The access token is not active', resource_metadata: PRM }, undefined, 1],
  ['I14 invalid_request', { kind: 'status', status: 400, body: '{"error":"invalid_request"}' }, 403,
    { error: 'forbidden', error_description: 'The access token cannot be used for this operation' }, { resource_metadata: PRM }, undefined, 1],
  ['I16 401 invalid_client with a Basic challenge', { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="zone"' }, body: '{"error":"invalid_client"}' }, 500,
    { error: 'server_error', error_description: 'The service is misconfigured' }, undefined, undefined, 1],
  ['I18 429 with Retry-After: 120', { kind: 'status', status: 429, headers: { 'retry-after': '120' }, body: '{"error":"slow_down"}' }, 503,
    { error: 'temporarily_unavailable', error_description: 'The authorization server is unavailable, retry later' }, undefined, '120', 1],
  ['I21 400 with an HTML body', { kind: 'status', status: 400, contentType: 'text/html', body: '<h1>proxy</h1>' }, 502, BAD_GATEWAY, undefined, undefined, 1],
  ['I22 302 to another host', { kind: 'redirect', location: 'http://127.0.0.1:9/token' }, 502, BAD_GATEWAY, undefined, undefined, 1],
  ['I23 a body over 1 MiB', { kind: 'oversized', bytes: 2 * 1024 * 1024 }, 502, BAD_GATEWAY, undefined, undefined, 1],
  ['200 with a JSON array', { kind: 'json', body: [TOKEN_RESPONSE] }, 502, BAD_GATEWAY, undefined, undefined, 1],
  ['200 with an error object and no token', { kind: 'status', status: 200, body: '{"error":"invalid_grant"}' }, 502, BAD_GATEWAY, undefined, undefined, 1],
  ['400 whose error is not a string', { kind: 'status', status: 400, body: '{"error":5}' }, 502, BAD_GATEWAY, undefined, undefined, 1],
  ['200 with an expires_in no date can hold', { kind: 'json', body: { ...TOKEN_RESPONSE, expires_in: 1e300 } }, 502, BAD_GATEWAY, undefined, undefined, 1],
];

describe.each(ADAPTERS)('trial: a zone answer and the API answer of a @Grant handler (Q8) over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, resources: { [R]: ['orders:read'], [UP]: ['up:read'] }, clients: [{ clientId: 'agent-a', clientSecret: SECRET }] });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET } }, { controllers: [GrantedController] });
  });
  afterEach(() => {
    zone.reset();
    api.clock.offsetMs = 0;
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });
  const call = (token: string) => send(api.url, 'GET', '/granted', [['Authorization', `Bearer ${token}`]]);

  it.each(ANSWERS)('%s', async (_name, fault, status, body, challenge, retryAfter, posts) => {
    zone.faults.token = fault;
    const token = zone.tokenFor({ user: 'alice', scopes: ['orders:read'] });
    const res = await call(token);
    expect({ status: res.status, body: res.json }).toEqual({ status, body });
    expect(parseChallenge(res.headers['www-authenticate'])?.params).toEqual(challenge);
    expect(res.headers['retry-after']).toBe(retryAfter);
    expect(zone.counts.token).toBe(posts);
    for (const text of [res.text, JSON.stringify(res.headers), ...api.logger.lines]) {
      for (const secret of [token, SECRET, '<b>', 'Set-Cookie']) expect(text).not.toContain(secret);
    }
  });

  it('an exchanged token is not served past the subject token expiry, even when the zone gave it an endless lifetime (I8)', async () => {
    zone.faults.token = { kind: 'json', body: { ...TOKEN_RESPONSE, expires_in: 1e300 } };
    const token = zone.tokenFor({ user: 'alice', scopes: ['orders:read'], claims: { exp: Math.floor(Date.now() / 1000) + 60 } });
    expect((await call(token)).status).toBe(502);
    // 15 s past the subject token's exp: inside the default 30 s leeway, so the API still accepts it; the zone no longer does.
    api.clock.offsetMs = 75_000;
    zone.faults.token = { kind: 'status', status: 400, body: '{"error":"invalid_grant"}' };
    const res = await call(token);
    expect({ status: res.status, body: res.json }).toEqual({ status: 401, body: { error: 'invalid_token', error_description: 'The access token is not active' } });
    expect(zone.counts.token).toBe(2);
  });
});

/** The workload token the zone accepts now (the platform's current one). */
let workloadToken = 'wi-v1';

describe('trial: the exchange cache, DPoP (H30, Q40) and a rotated workload token (I7)', () => {
  let zone: TestZone;
  let agent: Awaited<ReturnType<typeof startExchangeContext>> | undefined;
  const key = DpopKey.generate();

  beforeAll(async () => {
    zone = await TestZone.start({
      audience: 'https://agent.example.com',
      resources: { [R]: ['orders:read'] },
      clients: [{ clientId: 'agent-a', clientSecret: SECRET }, { clientId: 'agent-wi', acceptAssertion: (assertion) => assertion === workloadToken }],
    });
  });
  afterEach(async () => {
    await agent?.close();
    agent = undefined;
    zone.reset();
    zone.dpop = { bind: true };
  });
  afterAll(async () => {
    await zone?.stop();
  });
  const start = async () => (agent = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET } }));
  const subject = () => zone.tokenFor({ user: 'alice', scopes: ['orders:read'] });
  const kindOf = (promise: Promise<unknown>) => promise.then((t) => t, (e: unknown) => (e instanceof TokenExchangeError ? e.kind : e));

  it('a Bearer token cached for a request that did not require DPoP is never served to one that does: it asks the zone, and discards the Bearer answer', async () => {
    zone.dpop = { bind: false };
    const { service, logger } = await start();
    const subjectToken = subject();
    expect((await service.exchange({ subjectToken, resource: R, dpop: key })).tokenType).toBe('Bearer');
    expect(await kindOf(service.exchange({ subjectToken, resource: R, dpop: { key, required: true } }))).toBe('invalid_response');
    expect(zone.counts.token).toBe(2);
    // Asked at once, the required request does not join the other's flight either.
    const [plain, required] = await Promise.all([
      kindOf(service.exchange({ subjectToken: subject(), resource: R, scope: 'orders:read', dpop: key })),
      kindOf(service.exchange({ subjectToken: subject(), resource: R, scope: 'orders:read', dpop: { key, required: true } })),
    ]);
    expect(plain).toMatchObject({ tokenType: 'Bearer' });
    expect(required).toBe('invalid_response');
    expect(logger.lines.join('\n')).not.toContain(subjectToken);
  });

  it('a DPoP-bound token cached for a required request is served to the same request again (AS#1)', async () => {
    const { service } = await start();
    const subjectToken = subject();
    const bound = await service.exchange({ subjectToken, resource: R, dpop: { key, required: true } });
    expect(bound.tokenType).toBe('DPoP');
    expect(await service.exchange({ subjectToken, resource: R, dpop: { key, required: true } })).toBe(bound);
    expect(zone.counts.token).toBe(1);
  });

  it('I7 with two exchanges in flight: the one refused invalid_client retries with the rotated token, even though the other read it first', async () => {
    workloadToken = 'wi-v1';
    let current = 'wi-v1';
    agent = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials: new WorkloadIdentity({ source: () => current, clientId: 'agent-wi' }) });
    const { service, logger } = agent;
    // Every answer waits a second, so the second exchange reads the rotated token while the first is in flight.
    zone.faults.token = { kind: 'slow', delayMs: 1_000 };
    const first = kindOf(service.exchange({ subjectToken: subject(), resource: R }));
    while (zone.counts.token === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    workloadToken = current = 'wi-v2'; // the platform rotates the token; the zone no longer takes v1
    const second = kindOf(service.exchange({ subjectToken: subject(), resource: R }));
    expect(await second).toMatchObject({ tokenType: 'Bearer' });
    expect(await first).toMatchObject({ tokenType: 'Bearer' });
    expect(zone.tokenRequests.map((r) => r.form.client_assertion).sort()).toEqual(['wi-v1', 'wi-v2', 'wi-v2']);
    expect(logger.lines.join('\n')).not.toMatch(/wi-v[12]/);
  });

  it('I19 a workload token source that never answers: the exchange fails at its 5 s deadline (unavailable, AS#0) instead of hanging with its flight', async () => {
    agent = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials: new WorkloadIdentity({ source: () => new Promise<string>(() => undefined), clientId: 'agent-wi' }) });
    const subjectToken = subject();
    const first = await kindOf(agent.service.exchange({ subjectToken, resource: R }));
    expect(first).toBe('unavailable');
    expect(zone.counts.token).toBe(0);
    expect(agent.logger.lines.join('\n')).not.toContain(subjectToken);
  }, 15_000);
});
