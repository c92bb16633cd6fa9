/**
 * Findings of an attack trial of DPoP (issue 22), each a failing test before its fix, over Express
 * and Fastify with real requests on loopback (catalogue H7, H10). Every other attempt of the trial
 * (replays, htm/htu spellings, Host and X-Forwarded-* spoofing, absolute-form targets, iat skew,
 * ath, private jwk members, alg none/HS256/unknown, oversized and repeated proofs, Bearer
 * downgrades) already met its row: see the H rows in test/dpop.e2e-spec.ts and the report.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get } from '@nestjs/common';
import { DpopKey, DpopProofRequest, RequireScopes } from '../lib/index.js';
import { ERROR_DESCRIPTIONS } from '../lib/resource-server/keycard.exceptions.js';
import { TestZone } from '../lib/testing/index.js';
import { CountingReplayStore, dpopHeaders, expectDpopRefusal, hugeExponentRsaKey } from './support/dpop.js';
import { PRM, R } from './support/forge.js';
import { sendVerbatim } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

/** `/orders` and a wildcard `files/…` route (Express 5 names its wildcard; Fastify's is a bare `*`). */
function filesController(adapter: string) {
  @Controller()
  class FilesController {
    @RequireScopes('orders:read')
    @Get('orders')
    orders() {
      return { served: 'orders' };
    }

    @RequireScopes('orders:read')
    @Get(adapter === 'express' ? 'files/*path' : 'files/*')
    files() {
      return { served: 'files' };
    }
  }
  return FilesController;
}

describe.each(ADAPTERS)('DPoP attack trial over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let replay: CountingReplayStore;
  const key = DpopKey.generate();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    replay = new CountingReplayStore();
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'allowed', replayStore: replay } }, { controllers: [filesController(adapter)] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const bound = () => zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
  const sent = (target: string, token: string, proof: Partial<DpopProofRequest> & { path?: string }) => sendVerbatim(api.url, 'GET', target, dpopHeaders(key, token, proof));

  it('H7 a request target with dot segments (/files/../orders, /files/%2E%2E/orders, /files\\..\\orders) is refused: a proof made for /orders was accepted there and served by the files/* handler', async () => {
    for (const target of ['/files/../orders', '/files/%2E%2E/orders', '/files/.%2e/orders', '/files/x/..', '/files\\..\\orders']) {
      const token = bound();
      const before = replay.keys.length;
      const res = await sent(target, token, { path: target === '/files/x/..' ? '/files/' : '/orders' });
      expect({ target, served: (res.json as { served?: string } | undefined)?.served }).toEqual({ target, served: undefined });
      if (res.status === 404) continue; // not routed at all: nothing was served
      expectDpopRefusal(res, { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof, prm: PRM, secrets: [token], logs: api.logger.lines });
      expect(replay.keys.length - before).toBe(0);
    }
    const token = bound();
    expect((await sent('/files/a/b', token, { path: '/files/a/b' })).json).toEqual({ served: 'files' });
  });

  it('H10 a stolen token with a proof under the thief\'s key is refused on the binding before any signature check (a tampered signature still gets "Invalid DPoP key binding": the thief cannot make the API verify under keys it picks)', async () => {
    const token = bound();
    const thief = DpopKey.generate('PS256');
    const proof = thief.proof({ method: 'GET', url: `${R}/orders`, accessToken: token });
    const tampered = `${proof.slice(0, proof.lastIndexOf('.'))}.${'A'.repeat(342)}`;
    for (const sentProof of [proof, tampered]) {
      const res = await sendVerbatim(api.url, 'GET', '/orders', [['Authorization', `DPoP ${token}`], ['DPoP', sentProof]]);
      expectDpopRefusal(res, { dpopError: 'invalid_token', description: ERROR_DESCRIPTIONS.dpopBinding, prm: PRM, secrets: [token, sentProof], logs: api.logger.lines });
    }
  });

  it('H5 a proof key that is RSA with a public exponent over 32 bits (each verify ~200 times an ordinary one) → 401 invalid_dpop_proof, even for the token bound to it', async () => {
    const holder = DpopKey.from(hugeExponentRsaKey(), 'PS256');
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: holder });
    const res = await sendVerbatim(api.url, 'GET', '/orders', [['Authorization', `DPoP ${token}`], ['DPoP', holder.proof({ method: 'GET', url: `${R}/orders`, accessToken: token })]]);
    expectDpopRefusal(res, { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof, prm: PRM, secrets: [token], logs: api.logger.lines });
  });

  it('H25 an absolute-form request target (RFC 9112 §3.2.2, which servers must accept): of the public origin → served with a proof for it (was 401: the whole target was taken for the path); of another origin → 401 invalid_dpop_proof whatever the proof names', async () => {
    const token = bound();
    expect((await sent('https://api.example.com/orders', token, {})).json).toEqual({ served: 'orders' });
    expect((await sent('HTTPS://API.EXAMPLE.COM:443/orders?page=2', bound(), {})).json).toEqual({ served: 'orders' });
    for (const [target, htu] of [['http://evil.example/orders', `${R}/orders`], ['http://evil.example/orders', 'http://evil.example/orders'], ['https://api.example.com/files/../orders', `${R}/orders`]]) {
      const other = bound();
      const res = await sent(target, other, { claims: { htu } });
      expect({ target, served: (res.json as { served?: string } | undefined)?.served }).toEqual({ target, served: undefined });
      if (res.status !== 404) expectDpopRefusal(res, { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof, prm: PRM, secrets: [other], logs: api.logger.lines });
    }
  });
});
