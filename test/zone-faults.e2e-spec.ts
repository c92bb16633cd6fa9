/**
 * JWKS and zone-metadata faults (catalogue §E and §F): a real Nest app against a TestZone whose
 * endpoints are switched into faults, with the module's clock moved instead of waiting.
 */
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createSecretKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome, onScopedRoute } from './support/denials.js';
import { startExchangeContext } from './support/exchange-context.js';
import { baseClaims, bearer, hmacToken, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { startCountingListener } from './support/counting-listener.js';
import { send } from './support/http.js';
import { scopeOf, startApp } from './support/keycard-app.js';
import { zoneSuite } from './support/zone-suite.js';

const MINUTE = 60_000;


describe('zone faults', () => {
  const suite = zoneSuite((zone) => {
    zone.signingKeys.filter((k) => !['rs1', 'ec1'].includes(k.kid)).forEach((k) => zone.removeKey(k.kid));
  });

  const start = async () => {
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, clockToleranceSeconds: 60 });
    return suite.api;
  };
  /** T0 valid for two hours, so that moving the clock by minutes keeps it valid. */
  const t0 = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = T0_HEADER, kid = 'rs1') =>
    zoneSigned(suite.zone, header, baseClaims(suite.zone, { exp: Math.floor(Date.now() / 1000) + 7200, ...claims }), kid, header.alg as string);
  const get = (token?: string) => send(suite.api!.url, 'GET', '/orders', token ? bearer(token) : []);
  const expectToken = async (token: string, outcome: Parameters<typeof expectOutcome>[1]) =>
    expectOutcome(await get(token), onScopedRoute(outcome, scopeOf('GET', '/orders')), PRM, [token], suite.api!.logger.lines);

  describe('E. JWKS', () => {
    it('E1 cold start: 100 concurrent requests → 100 × 200, JWKS#1, MD#1', async () => {
      await start();
      const statuses = await Promise.all(Array.from({ length: 100 }, () => get(t0()).then((r) => r.status)));
      expect(statuses.every((s) => s === 200)).toBe(true);
      expect(suite.zone.counts.jwks).toBe(1);
      expect(suite.zone.counts.metadata).toBe(1);
    });

    it('E4 JWKS accepts and never answers → 503 RA at the 5 s absolute deadline', async () => {
      suite.zone.faults.jwks = { kind: 'hang' };
      await start();
      const started = Date.now();
      await expectToken(t0(), '503 RA');
      expect(Date.now() - started).toBeLessThan(7_000);
    });

    it('E5 JWKS drips one byte every 300 ms → 503 RA at the absolute deadline, not an idle timer', async () => {
      suite.zone.faults.jwks = { kind: 'drip', intervalMs: 300 };
      await start();
      const started = Date.now();
      await expectToken(t0(), '503 RA');
      expect(Date.now() - started).toBeGreaterThanOrEqual(4_900);
    });

    it.each([
      ['text/html', { kind: 'status', status: 200, contentType: 'text/html', body: '<html></html>' }],
      ['a broken JSON body', { kind: 'status', status: 200, body: '{' }],
    ] as const)('E6 JWKS answering %s → 503 RA', async (_name, fault) => {
      suite.zone.faults.jwks = { ...fault };
      await start();
      await expectToken(t0(), '503 RA');
    });

    it.each([[null], [{}], [{ keys: null }], [{ keys: [null] }]])('E7 JWKS body %j → 503 RA', async (body) => {
      suite.zone.faults.jwks = { kind: 'json', body };
      await start();
      await expectToken(t0(), '503 RA');
    });

    it('E8 an empty key set → 401 IT, and the cooldown still applies (no fetch per request)', async () => {
      suite.zone.faults.jwks = { kind: 'json', body: { keys: [] } };
      await start();
      for (let i = 0; i < 5; i++) await expectToken(t0(), '401 IT');
      expect(suite.zone.counts.jwks).toBe(1);
    });

    it('E9 JWKS 404 → 503 RA', async () => {
      suite.zone.faults.jwks = { kind: 'status', status: 404 };
      await start();
      await expectToken(t0(), '503 RA');
    });

    it('E10 JWKS redirect is not followed → 503 RA, no request to the target', async () => {
      const target = await startCountingListener();
      suite.zone.faults.jwks = { kind: 'redirect', location: `${target.url}/jwks` };
      await start();
      await expectToken(t0(), '503 RA');
      expect(target.hits()).toBe(0);
      await target.close();
    });

    it('E11 a 10 MB JWKS body is cut at the cap → 503 RA', async () => {
      suite.zone.faults.jwks = { kind: 'oversized', bytes: 10 * 1024 * 1024 };
      await start();
      await expectToken(t0(), '503 RA');
    });

    it('E12 a JWK with private members is not used → 401 IT, with an alert', async () => {
      const priv = suite.zone.key('rs1').privateKey.export({ format: 'jwk' });
      suite.zone.jwksOverride = { keys: [{ ...priv, kid: 'rs1', alg: 'RS256', use: 'sig' }] };
      await start();
      await expectToken(t0(), '401 IT');
      expect(suite.api!.logger.lines.some((l) => l.includes('rs1') && l.includes('not used'))).toBe(true);
    });

    it('E13 a symmetric JWK is never used → 401 IT', async () => {
      const k = Buffer.from('0123456789abcdef0123456789abcdef');
      suite.zone.jwksOverride = { keys: [...suite.zone.jwks().keys, { kty: 'oct', kid: 'k9', k: k.toString('base64url') }] };
      await start();
      await expectToken(hmacToken({ alg: 'HS256', typ: 'at+jwt', kid: 'k9' }, baseClaims(suite.zone), createSecretKey(k).export()), '401 IT');
    });

    it('E14 a 1024-bit RSA key is refused → 401 IT', async () => {
      suite.zone.addKey(TestZone.generateKey('rs-weak', 'RS256', 1024));
      await start();
      await expectToken(t0({}, { ...T0_HEADER, kid: 'rs-weak' }, 'rs-weak'), '401 IT');
      expect(suite.api!.logger.lines.some((l) => l.includes('rs-weak'))).toBe(true);
    });

    it('E15 use:enc, or key_ops without verify → 401 IT', async () => {
      suite.zone.addKey({ ...TestZone.generateKey('rs-enc', 'RS256'), jwkOverrides: { use: 'enc' } });
      suite.zone.addKey({ ...TestZone.generateKey('rs-ops', 'RS256'), jwkOverrides: { use: undefined, key_ops: ['encrypt'] } });
      await start();
      await expectToken(t0({}, { ...T0_HEADER, kid: 'rs-enc' }, 'rs-enc'), '401 IT');
      await expectToken(t0({}, { ...T0_HEADER, kid: 'rs-ops' }, 'rs-ops'), '401 IT');
    });

    it('E16 two JWKs sharing a kid → 401 IT, not 500', async () => {
      const twin = TestZone.generateKey('rs1', 'RS256');
      suite.zone.jwksOverride = { keys: [...suite.zone.jwks().keys, { ...(twin.publicKey.export({ format: 'jwk' }) as object), kid: 'rs1', alg: 'RS256' }] };
      await start();
      await expectToken(t0(), '401 IT');
    });

    it('E17 a token without kid: 200 with a one-key set, 401 IT with several', async () => {
      const noKid = { alg: T0_HEADER.alg, typ: T0_HEADER.typ };
      suite.zone.jwksOverride = { keys: [suite.zone.jwks().keys[0]] };
      await start();
      await expectToken(t0({}, noKid), '200');
      await suite.api!.close();
      suite.zone.jwksOverride = undefined;
      await start();
      await expectToken(t0({}, noKid), '401 IT');
    });

    it('E18 rotation: a new kid after the cooldown → one refetch → 200', async () => {
      await start();
      await expectToken(t0(), '200');
      const kid = suite.zone.rotateKeys();
      suite.api!.clock.offsetMs = 31_000;
      const before = suite.zone.counts.jwks;
      await expectToken(t0({}, { ...T0_HEADER, kid }, kid), '200');
      expect(suite.zone.counts.jwks - before).toBe(1);
    });

    it('E19 rotation inside the cooldown → 401 IT without a fetch; after the cooldown → 200', async () => {
      await start();
      await expectToken(t0(), '200');
      const kid = suite.zone.rotateKeys();
      const before = suite.zone.counts.jwks;
      await expectToken(t0({}, { ...T0_HEADER, kid }, kid), '401 IT');
      expect(suite.zone.counts.jwks).toBe(before);
      suite.api!.clock.offsetMs = 31_000;
      await expectToken(t0({}, { ...T0_HEADER, kid }, kid), '200');
    });

    it('E20 key withdrawal: tokens of a removed key stay valid until the key set is 10 minutes old', async () => {
      await start();
      await expectToken(t0(), '200');
      const rs1 = suite.zone.key('rs1');
      const token = t0();
      suite.zone.removeKey('rs1');
      try {
        suite.api!.clock.offsetMs = 9 * MINUTE;
        await expectToken(token, '200');
        suite.api!.clock.offsetMs = 10 * MINUTE + 1_000;
        await expectToken(token, '401 IT');
      } finally {
        suite.zone.addKey(rs1);
      }
    });

    it('E21 random-kid flood with legitimate traffic: every flood request 401 IT, JWKS ≤ 2, T0 stays 200', async () => {
      await start();
      await expectToken(t0(), '200');
      const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      const { signJws } = await import('../lib/testing/index.js');
      const before = suite.zone.counts.jwks;
      const flood: Promise<number>[] = [];
      const legit: Promise<number>[] = [];
      for (let i = 0; i < 2_000; i++) {
        if (i % 500 === 0) suite.api!.clock.offsetMs += 15_000; // the flood spans a minute of module time
        flood.push(get(signJws({ ...T0_HEADER, kid: `rnd-${i}-${Math.random()}` }, baseClaims(suite.zone), attacker, 'RS256')).then((r) => r.status));
        if (i % 20 === 0) legit.push(get(t0()).then((r) => r.status));
        if (i % 100 === 0) await Promise.all(flood.slice(-100));
      }
      const floodStatuses = await Promise.all(flood);
      const legitStatuses = await Promise.all(legit);
      expect(floodStatuses.every((s) => s === 401)).toBe(true);
      expect(legitStatuses.every((s) => s === 200)).toBe(true);
      expect(suite.zone.counts.jwks - before).toBeLessThanOrEqual(2);
    }, 90_000); // 2 000 RSA signatures and requests: seconds on an idle machine, far more on a busy one

    it('E22 random-kid flood while JWKS is down: ≤ 1 fetch per cooldown; the request whose refetch failed → 503, the rest 401, known kids 200', async () => {
      await start();
      await expectToken(t0(), '200');
      suite.zone.faults.jwks = { kind: 'status', status: 500 };
      suite.api!.clock.offsetMs = 31_000;
      const before = suite.zone.counts.jwks;
      await expectToken(t0({}, { ...T0_HEADER, kid: 'unknown-1' }), '503 RA');
      for (let i = 0; i < 20; i++) await expectToken(t0({}, { ...T0_HEADER, kid: `unknown-${i + 2}` }), '401 IT');
      await expectToken(t0(), '200');
      expect(suite.zone.counts.jwks - before).toBe(1);
    });

    it('JWKS down before any key was fetched: every 503 of a burst says Retry-After 1, when a request asks the zone again, and once it is back that request is served', async () => {
      suite.zone.faults.jwks = { kind: 'status', status: 500 };
      await start();
      suite.api!.clock.offsetMs += 1_000; // past any attempt made at boot
      const token = t0();
      const answers = await Promise.all(Array.from({ length: 10 }, () => get(token)));
      for (const answer of answers) {
        expectOutcome(answer, '503 RA', PRM, [token], suite.api!.logger.lines);
        expect(answer.json).toEqual({ error: 'temporarily_unavailable', error_description: 'The authorization server is unreachable, retry later' });
      }
      // Not 30 s for the request whose fetch failed and 1 s for the others: a request may ask again after 1 s.
      expect(new Set(answers.map((answer) => answer.headers['retry-after']))).toEqual(new Set(['1']));
      delete suite.zone.faults.jwks;
      const before = suite.zone.counts.jwks;
      suite.api!.clock.offsetMs += 1_000;
      await expectToken(token, '200');
      expect(suite.zone.counts.jwks - before).toBe(1);
    });

    it('E23 JWKS down with an old cache: known kid 200 inside the stale-if-error window (with an alert), 503 RA after it', async () => {
      await start();
      await expectToken(t0(), '200');
      suite.zone.faults.jwks = { kind: 'status', status: 500 };
      suite.api!.clock.offsetMs = 11 * MINUTE;
      await expectToken(t0({ exp: Math.floor(Date.now() / 1000) + 3 * 3600 }), '200');
      expect(suite.api!.logger.lines.some((l) => l.includes('could not be refreshed'))).toBe(true);
      suite.api!.clock.offsetMs = 71 * MINUTE;
      await expectToken(t0({ exp: Math.floor(Date.now() / 1000) + 3 * 3600 }), '503 RA');
    });

    it.each(['', '../../../../../../dev/null', '/dev/null', '/invalid_path', '|sleep 10', "x' UNION SELECT '1';--", 'k'.repeat(10_000).slice(0, 5000), 0, {}, ['rs1']])(
      'E24 hostile kid %j with a valid RS256 structure → 401 IT',
      async (kid) => {
        await start();
        await expectToken(t0({}, { ...T0_HEADER, kid }), '401 IT');
        expect(suite.zone.counts.jwks).toBeLessThanOrEqual(1);
      },
    );

    it('E25 jwks_uri off the zone origin (another host, or plain http elsewhere) → 503 RA, never fetched, with an alert', async () => {
      const other = await startCountingListener();
      suite.zone.metadataOverrides = { jwks_uri: `${other.url}/jwks` };
      await start();
      await expectToken(t0(), '503 RA');
      expect(other.hits()).toBe(0);
      expect(suite.api!.logger.lines.some((l) => l.includes("not on the zone's origin"))).toBe(true);
      await other.close();
    });

    it('E26 a self-signed TLS certificate on the zone → 503 RA', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'keycard-tls-'));
      try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
        const tlsZone = await TestZone.start({ audience: R, tls: { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') } });
        const tlsApi = await startApp('express', { zoneUrl: tlsZone.issuer, resource: R });
        try {
          expectOutcome(await send(tlsApi.url, 'GET', '/orders', bearer(tlsZone.issueToken())), '503 RA', PRM);
          expect(tlsZone.counts.metadata).toBe(0); // the TLS handshake failed before any request
        } finally {
          await tlsApi.close();
          await tlsZone.stop();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('E27 two zones in one process: keys never cross (per-module key caches)', async () => {
      const other = await TestZone.start({ audience: R });
      const otherApi = await startApp('express', { zoneUrl: other.issuer, resource: R });
      try {
        await start();
        await expectToken(t0(), '200');
        expectOutcome(await send(otherApi.url, 'GET', '/orders', bearer(other.issueToken({ scope: 'orders:read' }))), '200', PRM);
        // Zone B's rs1 signs a token claiming zone A: zone A's rs1 is another key.
        await expectToken(zoneSigned(other, T0_HEADER, baseClaims(suite.zone)), '401 IT');
        await expectToken(other.issueToken({ scope: 'orders:read' }), '401 IT');
      } finally {
        await otherApi.close();
        await other.stop();
      }
    });
  });

  describe('verified-token cache', () => {
    it('a token served from the cache still expires on time', async () => {
      await start();
      const token = t0({ exp: Math.floor(Date.now() / 1000) + 10 });
      await expectToken(token, '200');
      await expectToken(token, '200');
      suite.api!.clock.offsetMs = 71_000; // exp + the 60 s tolerance has passed
      await expectToken(token, '401 IT');
    });

    it('a cached token is checked again once the zone rotates the key it was verified with', async () => {
      await start();
      const token = t0();
      await expectToken(token, '200');
      await expectToken(token, '200'); // now cached (its second verification)
      suite.zone.jwksOverride = { keys: suite.zone.jwks().keys.map((k) => (k.kid === 'rs1' ? { ...(TestZone.generateKey('rs1', 'RS256').publicKey.export({ format: 'jwk' }) as object), kid: 'rs1', alg: 'RS256' } : k)) };
      suite.api!.clock.offsetMs = 10 * MINUTE + 1_000; // the key set is due for a refresh
      await expectToken(token, '401 IT');
    });
  });

  describe('F. zone metadata', () => {
    it('F3 metadata without issuer → 503 RA', async () => {
      suite.zone.metadataOverrides = { issuer: undefined };
      await start();
      await expectToken(t0(), '503 RA');
    });

    it('F4 metadata without jwks_uri → 503 RA', async () => {
      suite.zone.metadataOverrides = { jwks_uri: undefined };
      await start();
      await expectToken(t0(), '503 RA');
    });

    it.each([
      ['F4 no jwks_uri', () => ({ jwks_uri: undefined })],
      ['E25 a jwks_uri off the zone origin', () => ({ jwks_uri: 'https://keys.example.net/jwks' })],
      ['E25 a jwks_uri that is not a URL', () => ({ jwks_uri: 'not a url' })],
      ['E25 a jwks_uri on the zone origin with userinfo', () => ({ jwks_uri: suite.zone.jwksUri.replace('://', '://keycard:s3cret-pw@') })],
    ])('%s, in a document whose issuer is the zone: a configuration error (an error-level alert, 503 "misconfigured", requests wait for the back-off), fixed without a restart', async (_row, overrides) => {
      suite.zone.metadataOverrides = overrides();
      const api = await start();
      const token = t0();
      const first = await get(token);
      expectOutcome(first, onScopedRoute('503 RA', scopeOf('GET', '/orders')), PRM, [token], api.logger.lines);
      expect(first.json).toEqual({ error: 'temporarily_unavailable', error_description: 'The resource server is misconfigured' });
      expect(api.logger.levels.error.filter((l) => l.startsWith('Zone configuration error'))).toHaveLength(1);
      expect(api.logger.lines.some((l) => l.includes('unavailable, retrying'))).toBe(false);
      expect(api.logger.lines.join('\n')).not.toContain('s3cret-pw');
      // Past the outage's 500 ms floor, inside the first back-off step: no request asks the zone.
      const before = suite.zone.counts.metadata;
      api.clock.offsetMs = 700;
      for (let i = 0; i < 5; i++) await expectToken(token, '503 RA');
      expect(suite.zone.counts.metadata).toBe(before);
      suite.zone.reset();
      api.clock.offsetMs = 2_500;
      await get(token);
      await expectToken(token, '200');
    });

    it.each([
      ['500', { kind: 'status', status: 500 }],
      ['non-JSON', { kind: 'status', status: 200, contentType: 'text/html', body: '<html>' }],
      ['404', { kind: 'status', status: 404 }],
      ['{}', { kind: 'json', body: {} }],
    ] as const)('F5 metadata %s → 503 RA, not cached: recovers once the zone does', async (_name, fault) => {
      suite.zone.faults.metadata = { ...fault };
      if (fault.kind === 'status' && fault.status === 404) suite.zone.faults.oidc = { kind: 'status', status: 404 };
      await start();
      await expectToken(t0(), '503 RA');
      suite.zone.reset();
      suite.api!.clock.offsetMs = 2_000; // past the first back-off step
      await expectToken(t0(), '200');
    });

    it('F6 an issuer with a path: RFC 8414 path insertion, then the OIDC fallback', async () => {
      const tenant = await TestZone.start({ audience: R, issuerPath: '/tenant1' });
      const tenantApi = await startApp('express', { zoneUrl: tenant.issuer, resource: R });
      try {
        expectOutcome(await send(tenantApi.url, 'GET', '/orders', bearer(tenant.issueToken({ scope: 'orders:read' }))), '200', PRM);
        expect(tenant.counts).toMatchObject({ metadata: 1, oidc: 0 });
      } finally {
        await tenantApi.close();
      }
      tenant.faults.metadata = { kind: 'status', status: 404 };
      const fallbackApi = await startApp('express', { zoneUrl: tenant.issuer, resource: R });
      try {
        expectOutcome(await send(fallbackApi.url, 'GET', '/orders', bearer(tenant.issueToken({ scope: 'orders:read' }))), '200', PRM);
        expect(tenant.counts.oidc).toBe(1);
      } finally {
        await fallbackApi.close();
        await tenant.stop();
      }
    });

    it('F8 50 concurrent first requests → MD#1', async () => {
      await start();
      await Promise.all(Array.from({ length: 50 }, () => get(t0())));
      expect(suite.zone.counts.metadata).toBe(1);
    });

    it('F9 a failed metadata fetch fails every waiter (503 RA); the next call after the back-off re-fetches', async () => {
      suite.zone.faults.metadata = { kind: 'status', status: 500 };
      await start();
      const answers = await Promise.all([get(t0()), get(t0()), get(t0())]);
      for (const answer of answers) expectOutcome(answer, '503 RA', PRM);
      delete suite.zone.faults.metadata;
      const before = suite.zone.counts.metadata;
      suite.api!.clock.offsetMs = 2_000;
      await expectToken(t0(), '200');
      expect(suite.zone.counts.metadata - before).toBe(1);
    });

    it('F10 the refresh fails after the TTL: the last validated metadata stays in use (with an alert); a mismatched issuer is discarded', async () => {
      await start();
      await expectToken(t0(), '200');
      suite.zone.faults.metadata = { kind: 'status', status: 500 };
      suite.api!.clock.offsetMs = 11 * MINUTE;
      await expectToken(t0(), '200');
      await new Promise((r) => setTimeout(r, 50));
      expect(suite.api!.logger.lines.some((l) => l.includes('unavailable, retrying'))).toBe(true);
      suite.zone.reset();
      suite.zone.metadataOverrides = { issuer: 'https://evil.example' };
      suite.api!.clock.offsetMs = 13 * MINUTE;
      await expectToken(t0(), '200');
      await new Promise((r) => setTimeout(r, 50));
      expect(suite.api!.logger.lines.some((l) => l.includes('does not equal the configured zoneUrl'))).toBe(true);
    });

    it('F11 a metadata redirect is not followed → 503 RA', async () => {
      const target = await startCountingListener();
      suite.zone.faults.metadata = { kind: 'redirect', location: target.url };
      await start();
      await expectToken(t0(), '503 RA');
      expect(target.hits()).toBe(0);
      await target.close();
    });

    it('F12 token_endpoint off the zone origin: verification works, the exchange is disabled (503 for its callers)', async () => {
      suite.zone.metadataOverrides = { token_endpoint: 'http://evil.example/token' };
      await start();
      await expectToken(t0(), '200');
      const agent = await startExchangeContext({ zoneUrl: suite.zone.issuer, clientCredentials: { clientId: 'x', clientSecret: 'y' } });
      try {
        await expect(agent.service.exchange({ subjectToken: t0(), resource: R })).rejects.toMatchObject({ kind: 'unavailable' });
        expect(agent.logger.lines.some((l) => l.includes('Token exchange disabled'))).toBe(true);
      } finally {
        await agent.close();
      }
    });
  });
});
