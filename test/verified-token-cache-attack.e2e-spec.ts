/**
 * Attack trial of the verified-token cache that keeps a token from its second verification on
 * (issue 24, trial 24): revocation, expiry and freshness against tokens seen once or cached, forged
 * and re-signed tokens next to cached ones, and two trusted zones signing with the same `kid`. A
 * real Nest app on loopback, the real TestZone; the cache read from the app's container. Every
 * refusal is checked for its answer and that no token reached the answer or the logs.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { Controller, Get } from '@nestjs/common';
import { Agent, RequireScopes } from '../lib/index.js';
import type { AgentContext } from '../lib/interfaces/agent-context.interface.js';
import { TestZone } from '../lib/testing/index.js';
import { VerifiedTokenCache } from '../lib/resource-server/verified-token-cache.js';
import { expectOutcome, onScopedRoute } from './support/denials.js';
import { actChain, baseClaims, bearer, PRM, R, zoneSigned } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, scopeOf, startApp, type RunningApp } from './support/keycard-app.js';
import { revocationSuite, type RevocationInstance } from './support/revocation-app.js';

const suite = revocationSuite();

@Controller()
class SubjectController {
  @Get('orders')
  @RequireScopes('orders:read')
  list(@Agent() agent: AgentContext) {
    return { subject: agent.subject, actor: agent.actor?.subject ?? null };
  }
}
const jtiOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { jti: string }).jti;
const expOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { exp: number }).exp;

describe.each(ADAPTERS)('attack trial: the verified-token cache and revocation/expiry/freshness over %s', (adapter) => {
  const start = async () => {
    const at = await suite.instance({ adapter, keycard: { verifiedTokenCacheSize: 10_000 } });
    return { at, cache: at.app.get(VerifiedTokenCache) };
  };
  const refused = async (at: RevocationInstance, token: string, path = '/orders') =>
    expectOutcome(await at.get(token, path), '401 IT scope=orders:read', PRM, [token], at.logger.lines);

  it('X1 a token revoked between its first and its second use is refused at its second; one revoked while cached is refused at once', async () => {
    const { at, cache } = await start();
    const once = suite.zone.issueToken({ scope: 'orders:read' });
    expect((await at.get(once)).status).toBe(200);
    await at.revocations.revoke({ issuer: suite.zone.issuer, tokenId: jtiOf(once) });
    for (let i = 0; i < 3; i++) await refused(at, once);
    const cached = suite.zone.issueToken({ scope: 'orders:read', sid: 'sid-cached' });
    for (let i = 0; i < 3; i++) expect((await at.get(cached)).status).toBe(200);
    expect(cache.size).toBeGreaterThanOrEqual(1);
    await at.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-cached' });
    for (let i = 0; i < 2; i++) await refused(at, cached);
  });

  it('C13 a token that expires between its first and its second use, or while cached, is refused at once (clock tolerance 60 s)', async () => {
    const { at, cache } = await start();
    const once = suite.zone.issueToken({ scope: 'orders:read' });
    const cached = suite.zone.issueToken({ scope: 'orders:read', sub: 'cached' });
    expect((await at.get(once)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await at.get(cached)).status).toBe(200);
    expect(cache.size).toBe(1);
    at.clock.offsetMs = (expOf(cached) + 61) * 1000 - Date.now();
    await refused(at, once);
    await refused(at, cached);
    await refused(at, cached);
  });

  it('X29 @RequireFreshness asks the zone on every call, also for a token the cache holds: inactive at the zone → 401 IT at once', async () => {
    const { at, cache } = await start();
    const token = suite.zone.issueToken({ scope: 'orders:read' });
    for (let i = 0; i < 3; i++) expect((await at.get(token)).status).toBe(200);
    expect((await at.get(token, '/fresh')).status).toBe(200);
    expect(cache.size).toBe(1);
    const asked = suite.zone.counts.introspection;
    suite.zone.introspection.answerFor(token, { active: false });
    await refused(at, token, '/fresh');
    expect(suite.zone.counts.introspection).toBeGreaterThan(asked);
    expect((await at.get(token)).status).toBe(200); // a route without freshness keeps the signed answer
  });
});

describe.each(ADAPTERS)('attack trial: forged and re-signed tokens next to cached ones over %s', (adapter) => {
  let api: RunningApp | undefined;
  afterEach(async () => {
    await api?.close();
    api = undefined;
  });
  const expectToken = async (sent: string, outcome: '200' | '401 IT') =>
    expectOutcome(await send(api!.url, 'GET', '/orders', bearer(sent)), onScopedRoute(outcome, scopeOf('GET', '/orders')), PRM, [sent], api!.logger.lines);

  it('B13 one payload signed twice with ES256 (two signatures, both valid): two cache entries, each for its own text; a signature moved onto another payload is refused', async () => {
    const zone = suite.zone;
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, verifiedTokenCacheSize: 2 });
    const cache = api.app.get(VerifiedTokenCache);
    const header = { alg: 'ES256', typ: 'at+jwt', kid: 'ec1' };
    const claims = baseClaims(zone, { sub: 'alice' });
    const first = zoneSigned(zone, header, claims, 'ec1');
    const second = zoneSigned(zone, header, claims, 'ec1');
    expect(second).not.toBe(first);
    for (let i = 0; i < 3; i++) await expectToken(first, '200');
    for (let i = 0; i < 3; i++) await expectToken(second, '200');
    expect(cache.size).toBe(2);
    const [h, p] = zoneSigned(zone, header, baseClaims(zone, { sub: 'mallory', scope: 'orders:read admin' }), 'ec1').split('.');
    for (const signature of [first.split('.')[2], second.split('.')[2]]) {
      await expectToken(`${h}.${p}.${signature}`, '401 IT');
      await expectToken(`${h}.${p}.${signature}`, '401 IT');
    }
    // The same text with a re-encoded signature (a non-canonical last character) is another text, refused.
    const sig = first.split('.')[2];
    const last = sig[sig.length - 1];
    const twin = `${first.slice(0, -1)}${last === 'A' ? 'B' : String.fromCharCode(last.charCodeAt(0) ^ 1)}`;
    await expectToken(twin, '401 IT');
    await expectToken(twin, '401 IT');
    expect(cache.size).toBe(2);
  });

  it('E27 two trusted zones signing with the same kid rs1: a cached token of zone A never answers for zone B; B\'s key on A\'s payload is refused', async () => {
    const a = suite.zone;
    const b = await TestZone.start();
    try {
      api = await startApp(adapter, { zones: [a.issuer, b.issuer], resource: R, verifiedTokenCacheSize: 10 });
      const fromA = a.issueToken({ scope: 'orders:read', sub: 'alice' });
      for (let i = 0; i < 3; i++) await expectToken(fromA, '200');
      const payloadA = JSON.parse(Buffer.from(fromA.split('.')[1], 'base64url').toString()) as Record<string, unknown>;
      const header = JSON.parse(Buffer.from(fromA.split('.')[0], 'base64url').toString()) as Record<string, unknown>;
      // B signs A's claims under A's header (kid rs1 in both zones): A's rs1 does not verify it.
      const bOnA = zoneSigned(b, header, payloadA, 'rs1');
      for (let i = 0; i < 3; i++) await expectToken(bOnA, '401 IT');
      // A's signature on B's claims: B's rs1 does not verify it.
      const fromB = b.issueToken({ scope: 'orders:read', sub: 'alice', aud: R });
      const aOnB = `${fromB.split('.')[0]}.${fromB.split('.')[1]}.${fromA.split('.')[2]}`;
      for (let i = 0; i < 3; i++) await expectToken(aOnB, '401 IT');
      for (let i = 0; i < 3; i++) await expectToken(fromB, '200');
      expect(api.app.get(VerifiedTokenCache).size).toBe(2);
    } finally {
      await api?.close();
      api = undefined;
      await b.stop();
    }
  });

  it('T29 a zone-signed token near the 8 KB cap with 2 500 nested arrays in another claim, or a 33-link act chain beside them: 200 / 401 IT, no 500, the act bound read first', async () => {
    const zone = suite.zone;
    // The route answers the subject only: echoing the claims is the app's JSON.stringify, not the guard (see the report).
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: [SubjectController] });
    const nested = JSON.parse(`${'['.repeat(2500)}${']'.repeat(2500)}`) as unknown;
    const deep = zoneSigned(zone, { alg: 'RS256', typ: 'at+jwt', kid: 'rs1' }, baseClaims(zone, { ext: nested }));
    expect(deep.length).toBeLessThanOrEqual(8192);
    for (let i = 0; i < 3; i++) await expectToken(deep, '200');
    const both = zoneSigned(zone, { alg: 'RS256', typ: 'at+jwt', kid: 'rs1' }, baseClaims(zone, { ext: nested, act: actChain(33) }));
    await expectToken(both, '401 IT');
    const links32 = zoneSigned(zone, { alg: 'RS256', typ: 'at+jwt', kid: 'rs1' }, baseClaims(zone, { act: actChain(32) }));
    await expectToken(links32, '200');
  });
});

describe('attack trial: cache sizes past what a JavaScript Map or Set holds', () => {
  // V8 holds at most 2^24 entries in a Map or Set; past that `set`/`add` throws a RangeError. A
  // cache (or its seen-once set) sized above it would, after 2^24 tokens, refuse every new token.
  it.each(['verifiedTokenCacheSize', 'exchangeCacheSize'])('%s above 2^24 fails at bootstrap, naming the option; 2^24 boots', async (option) => {
    await expect(startApp('express', { zoneUrl: suite.zone.issuer, resource: R, [option]: 2 ** 24 + 1 })).rejects.toThrow(
      `KeycardModule: '${option}' must be a whole number from 0 to 16777216`,
    );
    await expect(startApp('express', { zoneUrl: suite.zone.issuer, resource: R, [option]: Number.MAX_SAFE_INTEGER })).rejects.toThrow(option);
    const api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, [option]: 2 ** 24 });
    await api.close();
  });
});
