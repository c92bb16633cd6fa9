/**
 * DPoP (RFC 9449) on the resource server, catalogue §H mode H-1 and the rows H14… that need one
 * instance: a real Nest app (Express and Fastify) on loopback, the real local zone issuing
 * DPoP-bound tokens, real proofs signed by client keys. Each test is named by its row.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DpopKey } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { ALGS, CountingReplayStore, dpopHeaders, expectDpopRefusal, forgedProof, tamperedSignature } from './support/dpop.js';
import { bearer, PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

describe.each(ADAPTERS)('DPoP over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let replay: CountingReplayStore;
  const key = DpopKey.generate('ES256');
  const other = DpopKey.generate('ES256');

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    replay = new CountingReplayStore();
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'allowed', replayStore: replay } });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const bound = (extra: Parameters<TestZone['tokenFor']>[0] = {}) => zone.tokenFor({ scopes: ['orders:read'], dpopKey: key, ...extra });
  const get = (headers: [string, string][], path = '/orders', method = 'GET') => send(api.url, method, path, headers);
  /** Asserts a refusal with the DPoP error `error`, nothing of `token` or the proof leaked. */
  const refusedOnDpop = async (headers: [string, string][], error: string, description?: string) => {
    const res = await get(headers);
    expectDpopRefusal(res, { dpopError: error, description, prm: PRM, secrets: headers.map(([, v]) => v.replace(/^DPoP /, '')), logs: api.logger.lines });
    return res;
  };

  it('H1 no credentials → 401 with a Bearer and a DPoP challenge, no error', async () => {
    const res = await get([]);
    expectDpopRefusal(res, { prm: PRM });
    expect(res.headers['www-authenticate']).toBe(`Bearer scope="orders:read", resource_metadata="${PRM}", DPoP algs="${ALGS}", resource_metadata="${PRM}"`);
  });

  it('H2 a DPoP-bound token with a valid proof → 200, the agent handed over', async () => {
    const token = bound();
    const res = await get(dpopHeaders(key, token));
    expect(res.status).toBe(200);
    expect((res.json as { agent: { clientId: string } }).agent.clientId).toBe('cli-1');
  });

  it('H3 the DPoP scheme without a DPoP header → 401 invalid_dpop_proof', () => refusedOnDpop([['Authorization', `DPoP ${bound()}`]], 'invalid_dpop_proof'));

  it('H4 two DPoP headers, or one comma-joined value → 401 invalid_dpop_proof', async () => {
    const token = bound();
    const [auth, proof] = dpopHeaders(key, token);
    const second = dpopHeaders(key, token)[1];
    await refusedOnDpop([auth, proof, second], 'invalid_dpop_proof');
    await refusedOnDpop([auth, ['DPoP', `${proof[1]},${second[1]}`]], 'invalid_dpop_proof');
  });

  it('H5 typ ≠ dpop+jwt, alg none or HS256, jwk missing, jwk with d → 401 invalid_dpop_proof', async () => {
    const token = bound();
    const auth: [string, string] = ['Authorization', `DPoP ${token}`];
    const claims = { jti: 'j-h5', htm: 'GET', htu: `${R}/orders`, iat: Math.floor(Date.now() / 1000) };
    const before = replay.keys.length;
    await refusedOnDpop([auth, ['DPoP', key.proof({ method: 'GET', url: `${R}/orders`, accessToken: token, header: { typ: 'JWT' } })]], 'invalid_dpop_proof');
    await refusedOnDpop([auth, ['DPoP', forgedProof({ typ: 'dpop+jwt', alg: 'none', jwk: key.publicJwk }, claims)]], 'invalid_dpop_proof');
    await refusedOnDpop([auth, ['DPoP', forgedProof({ typ: 'dpop+jwt', alg: 'HS256', jwk: key.publicJwk }, claims, 'secret')]], 'invalid_dpop_proof');
    await refusedOnDpop([auth, ['DPoP', key.proof({ method: 'GET', url: `${R}/orders`, accessToken: token, header: { jwk: undefined } })]], 'invalid_dpop_proof');
    await refusedOnDpop([auth, ['DPoP', key.proof({ method: 'GET', url: `${R}/orders`, accessToken: token, header: { jwk: { ...key.publicJwk, d: 'AAAA' } } })]], 'invalid_dpop_proof');
    expect(replay.keys.length).toBe(before);
  });

  it('H5 (conformance sep-1932-server-validate-proof probes) htm, htu or iat absent; a tampered signature; not a JWT → 401 invalid_dpop_proof, nothing stored', async () => {
    const token = bound();
    const auth: [string, string] = ['Authorization', `DPoP ${token}`];
    const before = replay.keys.length;
    for (const claim of ['htm', 'htu', 'iat']) {
      await refusedOnDpop([auth, ['DPoP', key.proof({ method: 'GET', url: `${R}/orders`, accessToken: token, claims: { [claim]: undefined } })]], 'invalid_dpop_proof');
    }
    await refusedOnDpop([auth, ['DPoP', tamperedSignature(key.proof({ method: 'GET', url: `${R}/orders`, accessToken: token }))]], 'invalid_dpop_proof');
    await refusedOnDpop([auth, ['DPoP', 'this-is-not-a-jwt']], 'invalid_dpop_proof');
    expect(replay.keys.length).toBe(before);
  });

  it('H6 htm ≠ the request method → 401 invalid_dpop_proof', () => refusedOnDpop(dpopHeaders(key, bound(), { method: 'POST' }), 'invalid_dpop_proof'));

  it('H7 htu of another host or path → 401; equal but for query, fragment or spelling → 200', async () => {
    const token = bound();
    await refusedOnDpop(dpopHeaders(key, token, { claims: { htu: 'https://evil.example.com/orders' } }), 'invalid_dpop_proof');
    await refusedOnDpop(dpopHeaders(key, token, { claims: { htu: `${R}/admin` } }), 'invalid_dpop_proof');
    for (const htu of [`${R}/orders?page=2`, `${R}/orders#top`, 'HTTPS://API.EXAMPLE.COM:443/orders', `${R}/%6Frders`]) {
      expect((await get(dpopHeaders(key, token, { claims: { htu } }))).status).toBe(200);
    }
  });

  it('H8 proof iat 120 s old or 120 s ahead (window ±60 s) → 401 invalid_dpop_proof', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refusedOnDpop(dpopHeaders(key, bound(), { iat: now - 120 }), 'invalid_dpop_proof');
    await refusedOnDpop(dpopHeaders(key, bound(), { iat: now + 120 }), 'invalid_dpop_proof');
  });

  it('H9 ath missing or not the hash of the token → 401 invalid_dpop_proof', async () => {
    const token = bound();
    await refusedOnDpop(dpopHeaders(key, token, { claims: { ath: undefined } }), 'invalid_dpop_proof');
    await refusedOnDpop(dpopHeaders(key, token, { claims: { ath: 'x'.repeat(43) } }), 'invalid_dpop_proof');
    await refusedOnDpop([['Authorization', `DPoP ${token}`], ['DPoP', key.proof({ method: 'GET', url: `${R}/orders`, accessToken: bound() })]], 'invalid_dpop_proof');
  });

  it('H10 a proof by another key than cnf.jkt → 401 DPoP invalid_token "Invalid DPoP key binding"', () =>
    refusedOnDpop(dpopHeaders(other, bound()), 'invalid_token', 'Invalid DPoP key binding'));

  it('H11 the same proof replayed → 401 invalid_dpop_proof', async () => {
    const headers = dpopHeaders(key, bound());
    expect((await get(headers)).status).toBe(200);
    await refusedOnDpop(headers, 'invalid_dpop_proof');
  });

  it('H12 a token without cnf.jkt under the DPoP scheme with a valid proof → 401 DPoP invalid_token', () =>
    refusedOnDpop(dpopHeaders(key, zone.tokenFor({ scopes: ['orders:read'] })), 'invalid_token'));

  it('H13 Bearer scheme, invalid token → the error on Bearer only, DPoP algs alongside', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], claims: { exp: 1 } });
    const res = await get(bearer(token));
    expectDpopRefusal(res, { bearerError: 'invalid_token', prm: PRM, logs: api.logger.lines, secrets: [token] });
  });

  it('C26 (DPoP on) a DPoP-bound token under the Bearer scheme → 401 IT "DPoP-bound token requires the DPoP authentication scheme"', async () => {
    const token = bound();
    const res = await get(bearer(token));
    expectDpopRefusal(res, { bearerError: 'invalid_token', description: 'DPoP-bound token requires the DPoP authentication scheme', prm: PRM, secrets: [token], logs: api.logger.lines });
  });

  it('H16 jti of 4 KB, absent, or 42 → 401 invalid_dpop_proof, nothing stored', async () => {
    const before = replay.keys.length;
    for (const jti of ['j'.repeat(4096), undefined, 42]) {
      await refusedOnDpop(dpopHeaders(key, bound(), { claims: { jti } }), 'invalid_dpop_proof');
    }
    expect(replay.keys.length).toBe(before);
  });

  it('H14 (one instance) the replay record is SHA-256(jkt ‖ jti), never the raw jti', async () => {
    const jti = `jti-${Date.now()}`;
    expect((await get(dpopHeaders(key, bound(), { jti }))).status).toBe(200);
    const last = replay.keys.at(-1)!;
    expect(last).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(last.includes(jti)).toBe(false);
  });

  it('H25 htu is the configured public origin + routed path, whatever Host says', async () => {
    const token = bound();
    expect((await get([...dpopHeaders(key, token), ['Host', 'evil.example']])).status).toBe(200);
    await refusedOnDpop([...dpopHeaders(key, token, { claims: { htu: 'http://evil.example/orders' } }), ['Host', 'evil.example']], 'invalid_dpop_proof');
    await refusedOnDpop(dpopHeaders(key, token, { claims: { htu: `${api.url}/orders` } }), 'invalid_dpop_proof');
  });

  it('H32 a DPoP-bound token for another audience with a valid proof → 401 DPoP invalid_token', () =>
    refusedOnDpop(dpopHeaders(key, bound({ audience: 'https://other.example.com' })), 'invalid_token'));

  it('H23 (allowed) the metadata lists the proof algorithms and not the required flag', async () => {
    const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource');
    expect(res.json).toMatchObject({ dpop_signing_alg_values_supported: ['ES256', 'PS256'] });
    expect(res.json).not.toHaveProperty('dpop_bound_access_tokens_required');
  });
});

describe.each(ADAPTERS)('DPoP required, the MCP window, DPoP off (%s)', (adapter) => {
  let zone: TestZone;
  let required: RunningApp;
  let wide: RunningApp;
  let off: RunningApp;
  const key = DpopKey.generate('PS256');

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    required = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: 'required' });
    wide = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'allowed', proofWindowSeconds: 300 } });
    off = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
  });
  afterAll(async () => {
    await Promise.all([required?.close(), wide?.close(), off?.close()]);
    await zone?.stop();
  });

  it('H23 metadata: required → both members; off → neither; never none or HS*', async () => {
    const prm = (app: RunningApp) => send(app.url, 'GET', '/.well-known/oauth-protected-resource').then((r) => r.json as Record<string, unknown>);
    expect(await prm(required)).toMatchObject({ dpop_bound_access_tokens_required: true, dpop_signing_alg_values_supported: ['ES256', 'PS256'] });
    const plain = await prm(off);
    expect(plain).not.toHaveProperty('dpop_signing_alg_values_supported');
    expect(plain).not.toHaveProperty('dpop_bound_access_tokens_required');
  });

  it('H24 required: Bearer T0 and Bearer with a bound token → 401 with only a DPoP challenge, no error', async () => {
    for (const token of [zone.tokenFor({ scopes: ['orders:read'] }), zone.tokenFor({ scopes: ['orders:read'], dpopKey: key })]) {
      const res = await send(required.url, 'GET', '/orders', bearer(token));
      expectDpopRefusal(res, { bearer: false, prm: PRM, secrets: [token], logs: required.logger.lines });
      expect(res.headers['www-authenticate']).toBe(`DPoP scope="orders:read", algs="${ALGS}", resource_metadata="${PRM}"`);
    }
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    expect((await send(required.url, 'GET', '/orders', dpopHeaders(key, token))).status).toBe(200);
  });

  it('H17 MCP window ±300 s: iat −299, +299 → 200; −303, +303 → 401 invalid_dpop_proof', async () => {
    // `now` is read for each proof: on a busy machine a second may pass between two requests, and
    // a proof made at −299 s against an older `now` would be −300 s old when it arrives.
    const now = () => Math.floor(Date.now() / 1000);
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    for (const offset of [-299, 299]) expect((await send(wide.url, 'GET', '/orders', dpopHeaders(key, token, { iat: now() + offset }))).status).toBe(200);
    for (const offset of [-303, 303]) {
      const res = await send(wide.url, 'GET', '/orders', dpopHeaders(key, token, { iat: now() + offset }));
      expectDpopRefusal(res, { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [token], logs: wide.logger.lines });
    }
  });

  it('H15 a proof at iat = now + 299 s is accepted once; its replay 598 s later is still refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key, claims: { exp: now + 3600 } });
    const headers = dpopHeaders(key, token, { iat: now + 299 });
    expect((await send(wide.url, 'GET', '/orders', headers)).status).toBe(200);
    wide.clock.offsetMs = 598_000;
    try {
      const res = await send(wide.url, 'GET', '/orders', headers);
      expectDpopRefusal(res, { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [token], logs: wide.logger.lines });
    } finally {
      wide.clock.offsetMs = 0;
    }
  });

  it('H15 at the window\'s last millisecond (|iat − now| = 300 s, still accepted) a replay is refused: the record outlives the window by a millisecond', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key, claims: { exp: now + 3600 } });
    const headers = dpopHeaders(key, token, { iat: now });
    wide.clock.frozenAtMs = (now + 300) * 1000;
    try {
      expect((await send(wide.url, 'GET', '/orders', headers)).status).toBe(200);
      const res = await send(wide.url, 'GET', '/orders', headers);
      expectDpopRefusal(res, { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [token], logs: wide.logger.lines });
      wide.clock.frozenAtMs = (now + 300) * 1000 + 1;
      expectDpopRefusal(await send(wide.url, 'GET', '/orders', headers), { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [token], logs: wide.logger.lines });
    } finally {
      wide.clock.frozenAtMs = undefined;
    }
  });
});
