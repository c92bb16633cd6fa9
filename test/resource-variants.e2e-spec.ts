/**
 * Module configurations other than the catalogue's default profile: strict RFC 9068 typing, a
 * resource with a path, no configured resource (loopback development), and a zone outage.
 */
import { describe, expect, it } from '@jest/globals';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { baseClaims, bearer, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp } from './support/keycard-app.js';
import { zoneSuite } from './support/zone-suite.js';

describe.each(ADAPTERS)('variants over %s', (adapter) => {
  const suite = zoneSuite();

  describe('requireAtJwtType: true (Q9 strict)', () => {
    it('C1 typ absent → 401 IT; C2 JWT → 401 IT; at+jwt → 200', async () => {
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R, requireAtJwtType: true });
      const claims = () => baseClaims(suite.zone);
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(zoneSigned(suite.zone, { alg: 'RS256', kid: 'rs1' }, claims()))), '401 IT scope=orders:read', PRM);
      for (const typ of ['JWT', 'jwt']) {
        expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(zoneSigned(suite.zone, { ...T0_HEADER, typ }, claims()))), '401 IT scope=orders:read', PRM);
      }
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(zoneSigned(suite.zone, T0_HEADER, claims()))), '200', PRM);
    });
  });

  describe('a resource with a path', () => {
    const R2 = `${R}/orders`;
    const PRM2 = `${R}/.well-known/oauth-protected-resource/orders`;
    it('G2 the PRM is served at the suffixed path, and only there', async () => {
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R2 });
      const doc = await send(suite.api.url, 'GET', '/.well-known/oauth-protected-resource/orders');
      expect(doc.status).toBe(200);
      expect((doc.json as { resource: string }).resource).toBe(R2);
      expect((await send(suite.api.url, 'GET', '/.well-known/oauth-protected-resource')).status).toBe(404);
      expect((await send(suite.api.url, 'GET', '/.well-known/oauth-protected-resource/other')).status).toBe(404);
    });
    it('G8 every 401/403 under R2 points to the suffixed metadata URL', async () => {
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R2 });
      expectOutcome(await send(suite.api.url, 'GET', '/orders'), '401∅ scope=orders:read', PRM2);
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone)))), '401 IT scope=orders:read', PRM2);
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone, { aud: R2 })))), '200', PRM2);
      const noScope = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone, { aud: R2, scope: 'profile' }));
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(noScope)), '403:orders:read', PRM2);
      // Routes outside R2 (/admin) are never judged against R2: catalogue M8, test/app-shapes.e2e-spec.ts.
    });
  });

  describe('no resource configured', () => {
    it('derives it from a loopback origin, and fails closed (500) for any other host', async () => {
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer });
      const origin = suite.api.url;
      const doc = await send(suite.api.url, 'GET', '/.well-known/oauth-protected-resource');
      expect((doc.json as { resource: string }).resource).toBe(origin);
      expectOutcome(await send(suite.api.url, 'GET', '/orders'), '401∅ scope=orders:read', `${origin}/.well-known/oauth-protected-resource`);
      const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone, { aud: origin }));
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token)), '200', '');
      const foreign = await send(suite.api.url, 'GET', '/orders', [['Host', 'api.example.com'], ...bearer(token)]);
      expect(foreign.status).toBe(500);
      expect(foreign.headers['www-authenticate']).toBeUndefined();
      expect(suite.api.logger.lines.some((l) => l.includes("configure KeycardModule 'resource'"))).toBe(true);
      const injected = await send(suite.api.url, 'GET', '/orders', [['Host', 'localhost/evil?'], ...bearer(token)]);
      expect(injected.status).toBe(400); // A31
    });
  });

  describe('zone outage (Q5, INV4)', () => {
    it('F1 boots while the zone is down: PRM 200, protected routes 503 + Retry-After, then 200 without restart', async () => {
      suite.zone.faults.metadata = { kind: 'status', status: 500 };
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R });
      expect((await send(suite.api.url, 'GET', '/.well-known/oauth-protected-resource')).status).toBe(200);
      const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone));
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token)), '503 RA', PRM, [token], suite.api.logger.lines);
      expect((await send(suite.api.url, 'GET', '/.well-known/oauth-authorization-server')).status).toBe(503);
      delete suite.zone.faults.metadata;
      // The background retry runs after its first back-off step (1 s); no restart, no request needed.
      await new Promise((r) => setTimeout(r, 1_300));
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token)), '200', PRM);
    });
    it('E2 cold JWKS answering 500 → 503 RA, not cached: once it recovers → 200', async () => {
      suite.zone.faults.jwks = { kind: 'status', status: 500 };
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R });
      const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone));
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token)), '503 RA', PRM);
      delete suite.zone.faults.jwks;
      suite.api.clock.offsetMs += 2_000;
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token)), '200', PRM);
    });
    it('F2 metadata issuer mismatch → 503 RA, never the token iss', async () => {
      suite.zone.metadataOverrides = { issuer: `${suite.zone.issuer}/` };
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R });
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone)))), '503 RA', PRM);
      expect(suite.api.logger.lines.some((l) => l.includes('does not equal the configured zoneUrl'))).toBe(true);
    });
  });
});

describe('a zone that refuses connections', () => {
  it('E3 answers 503 RA', async () => {
    const zone = await TestZone.start({ audience: R });
    const token = zone.issueToken({ scope: 'orders:read' });
    const issuer = zone.issuer;
    await zone.stop();
    const api = await startApp('express', { zoneUrl: issuer, resource: R });
    try {
      expectOutcome(await send(api.url, 'GET', '/orders', bearer(token)), '503 RA', PRM, [token], api.logger.lines);
    } finally {
      await api.close();
    }
  });
});
