/**
 * One module trusting several zones (catalogue §S4–S5, C23): the token's `iss` picks the zone from
 * an exact allow-list before any I/O; each zone verifies only its own tokens, with its own keys,
 * resources and exchange credentials. Real TestZones over loopback.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get } from '@nestjs/common';
import { Agent, ClientCredentialsService, ImpersonationService, Public, TokenExchangeError } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { startExchangeContext } from './support/exchange-context.js';
import { baseClaims, PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

/** A second resource of the same API, matched for /admin by its path. */
const R2 = `${R}/admin`;
const PRM2 = `${R}/.well-known/oauth-protected-resource/admin`;

/** Every request a zone has answered so far, whatever the endpoint. */
const requestsTo = (zone: TestZone) => Object.values(zone.counts).reduce((sum, n) => sum + n, 0);

/** The client id of a `client_secret_basic` `Authorization` header. */
const basicUser = (header: unknown) => Buffer.from(String(header).replace(/^Basic /, ''), 'base64').toString().split(':')[0];

/** Both zones, each with its own `clientCredentials` (svc-1 / svc-2). */
const zonesWithCredentials = (z1: TestZone, z2: TestZone) => [
  { zoneUrl: z1.issuer, clientCredentials: { clientId: 'svc-1', clientSecret: 'secret-of-zone-1' } },
  { zoneUrl: z2.issuer, clientCredentials: { clientId: 'svc-2', clientSecret: 'secret-of-zone-2' } },
];

/** Handlers asking for grants without naming a zone (Q22). */
@Controller('')
class AsServiceController {
  constructor(
    private readonly asService: ClientCredentialsService,
    private readonly impersonation: ImpersonationService,
  ) {}

  @Get('as-service')
  async token() {
    // An await first: the zone must survive the handler's own asynchronous steps.
    await new Promise((resolve) => setImmediate(resolve));
    return { token: (await this.asService.token({ resource: R2, scope: 'invoices:read' })).accessToken };
  }

  @Public()
  @Get('as-service/public')
  async publicToken() {
    return { token: (await this.asService.token({ resource: R2 })).accessToken };
  }

  @Get('impersonate')
  async impersonate(@Agent('subject') user: string) {
    return { token: (await this.impersonation.impersonate({ user, resource: R2 })).accessToken };
  }
}

describe('several zones', () => {
  let z1: TestZone;
  let z2: TestZone;
  let stranger: TestZone;

  beforeAll(async () => {
    const client = (n: number) => ({ clientId: `svc-${n}`, clientSecret: `secret-of-zone-${n}` });
    [z1, z2, stranger] = await Promise.all([
      TestZone.start({ audience: R, clients: [client(1)], resources: { [R2]: ['invoices:read'] } }),
      TestZone.start({ audience: R, clients: [client(2)], resources: { [R2]: ['invoices:read'] } }),
      TestZone.start({ audience: R }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([z1, z2, stranger].map((z) => z?.stop()));
  });

  describe.each(ADAPTERS)('guard over %s', (adapter) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zones: [z1.issuer, { zoneUrl: z2.issuer }], resource: R });
    });
    afterAll(async () => {
      await api?.close();
    });
    afterEach(() => {
      api.clock.offsetMs = 0;
    });

    const get = (token: string) => send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);

    it('S4 a Z1 token and a Z2 token → 200 each, each verified with its own zone\'s keys', async () => {
      const t1 = z1.issueToken(baseClaims(z1, { client_id: 'agent-1' }));
      const t2 = z2.issueToken(baseClaims(z2, { client_id: 'agent-2' }));
      const [a1, a2] = [await get(t1), await get(t2)];
      expectOutcome(a1, '200', PRM, [t1], api.logger.lines);
      expectOutcome(a2, '200', PRM, [t2], api.logger.lines);
      expect((a1.json as { agent: { issuer: string } }).agent.issuer).toBe(z1.issuer);
      expect((a2.json as { agent: { issuer: string } }).agent.issuer).toBe(z2.issuer);
      expect(z1.counts.jwks).toBeGreaterThanOrEqual(1);
      expect(z2.counts.jwks).toBeGreaterThanOrEqual(1);
    });

    it('S4 a token from an untrusted issuer → 401 IT with no outbound request, even with a kid no zone knows and the key cool-down over', async () => {
      const key = TestZone.generateKey('fresh-kid', 'RS256');
      stranger.addKey(key);
      const token = stranger.issueToken(baseClaims(stranger), { kid: 'fresh-kid' });
      await get(z1.issueToken(baseClaims(z1))); // both zones warm
      await get(z2.issueToken(baseClaims(z2)));
      api.clock.offsetMs = 120_000; // past every JWKS cool-down: a key lookup would fetch now
      const before = [requestsTo(z1), requestsTo(z2), requestsTo(stranger)];
      const res = await get(token);
      expectOutcome(res, '401 IT scope=orders:read', PRM, [token], api.logger.lines);
      expect([requestsTo(z1), requestsTo(z2), requestsTo(stranger)]).toEqual(before);
      // Look-alike issuers are not in the allow-list either: exact match only.
      for (const iss of [`${z1.issuer}/`, z1.issuer.toUpperCase(), ` ${z1.issuer}`]) {
        const lookalike = z1.issueToken(baseClaims(z1, { iss }));
        expectOutcome(await get(lookalike), '401 IT scope=orders:read', PRM, [lookalike], api.logger.lines);
      }
      expect([requestsTo(z1), requestsTo(z2), requestsTo(stranger)]).toEqual(before);
    });

    it('C23 token signed by the correct key but iss of another trusted issuer → 401 IT (the key must belong to the iss)', async () => {
      // Both zones publish a kid "rs1": the Z1 key signs a token claiming Z2, and the other way round.
      expect(z1.key('rs1').kid).toBe(z2.key('rs1').kid);
      const claimsZ2 = z1.issueToken(baseClaims(z1, { iss: z2.issuer }), { kid: 'rs1' });
      const claimsZ1 = z2.issueToken(baseClaims(z2, { iss: z1.issuer }), { kid: 'rs1' });
      expectOutcome(await get(claimsZ2), '401 IT scope=orders:read', PRM, [claimsZ2], api.logger.lines);
      expectOutcome(await get(claimsZ1), '401 IT scope=orders:read', PRM, [claimsZ1], api.logger.lines);
      // The same tokens with their own iss pass: only the issuer/key pairing is refused.
      expectOutcome(await get(z1.issueToken(baseClaims(z1), { kid: 'rs1' })), '200', PRM);
    });

    it('S4 Z2 iss with a Z1-signed signature (same kid) → 401 IT, and the cached Z1 verification does not leak to it', async () => {
      const genuine = z1.issueToken(baseClaims(z1, { jti: 'same-jti' }));
      expectOutcome(await get(genuine), '200', PRM);
      const forged = z1.issueToken(baseClaims(z1, { iss: z2.issuer, jti: 'same-jti' }));
      expectOutcome(await get(forged), '401 IT scope=orders:read', PRM, [forged], api.logger.lines);
      expect(api.logger.lines.some((l) => l.includes('reason=signature_invalid'))).toBe(true);
    });

    it('S5 the PRM document lists every zone\'s issuer', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource');
      expect(res.status).toBe(200);
      expect((res.json as { authorization_servers: string[] }).authorization_servers).toEqual([z1.issuer, z2.issuer]);
    });
  });

  describe('zones with their own resources', () => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp('express', {
        zones: [
          { zoneUrl: z1.issuer, resource: R },
          { zoneUrl: z2.issuer, resource: [R, R2] },
        ],
      });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('S4 a zone\'s token for a resource that zone does not serve → 401 IT before any key lookup; PRM lists only the zones serving each resource', async () => {
      const get = (path: string, token: string) => send(api.url, 'GET', path, [['Authorization', `Bearer ${token}`]]);
      expectOutcome(await get('/admin', z2.issueToken(baseClaims(z2, { aud: R2, scope: 'admin' }))), '200', PRM2);
      expectOutcome(await get('/orders', z1.issueToken(baseClaims(z1))), '200', PRM);
      // A kid Z1 does not publish: a key lookup past the cool-down would refetch Z1's keys.
      const fromZ1 = z1.issueToken(baseClaims(z1, { aud: R2, scope: 'admin' }), { header: { kid: 'not-published' } });
      api.clock.offsetMs = 120_000; // past every JWKS cool-down: a key lookup would fetch now
      const before = [requestsTo(z1), requestsTo(z2)];
      expectOutcome(await get('/admin', fromZ1), '401 IT scope=admin', PRM2, [fromZ1], api.logger.lines);
      expect([requestsTo(z1), requestsTo(z2)]).toEqual(before);
      expect(api.logger.lines.some((l) => l.includes('reason=audience_mismatch'))).toBe(true);

      const servers = async (path: string) => ((await send(api.url, 'GET', path)).json as { authorization_servers: string[] }).authorization_servers;
      expect(await servers('/.well-known/oauth-protected-resource')).toEqual([z1.issuer, z2.issuer]);
      expect(await servers('/.well-known/oauth-protected-resource/admin')).toEqual([z2.issuer]);
    });
  });

  describe.each(ADAPTERS)('grants that name no zone (Q22) over %s', (adapter) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zones: zonesWithCredentials(z1, z2), resource: R }, { controllers: [AsServiceController] });
    });
    afterAll(async () => {
      await api?.close();
    });
    afterEach(() => {
      for (const zone of [z1, z2]) zone.reset();
    });

    const get = (path: string, token: string) => send(api.url, 'GET', path, [['Authorization', `Bearer ${token}`]]);

    it('O17 (a) ClientCredentialsService without zone inside a request verified at Z2 → AS#1 at Z2 with Z2\'s credentials, AS#0 at Z1', async () => {
      const t2 = z2.issueToken(baseClaims(z2, { client_id: 'agent-2' }));
      const res = await get('/as-service', t2);
      expect(res.status).toBe(200);
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 1]);
      expect(basicUser(z2.tokenRequests[0].headers.authorization)).toBe('svc-2');
      expect(z2.tokenRequests[0].form).toEqual({ grant_type: 'client_credentials', resource: R2, scope: 'invoices:read' });
      expect(z2.verifyOwnToken((res.json as { token: string }).token)).toMatchObject({ sub: 'svc-2' });
      // Requests of both zones at once: each handler asks its own caller's zone.
      z2.reset();
      const t1 = z1.issueToken(baseClaims(z1, { client_id: 'agent-1' }));
      const [r1, r2] = await Promise.all([get('/as-service', t1), get('/as-service', t2)]);
      expect([r1.status, r2.status]).toEqual([200, 200]);
      expect(z1.verifyOwnToken((r1.json as { token: string }).token)).toMatchObject({ sub: 'svc-1' });
      expect(z2.verifyOwnToken((r2.json as { token: string }).token)).toMatchObject({ sub: 'svc-2' });
      for (const secret of [t1, t2, 'secret-of-zone-1', 'secret-of-zone-2']) expect(api.logger.lines.some((l) => l.includes(secret))).toBe(false);
    });

    it('O17 (a) ImpersonationService without zone inside a request verified at Z2 → the same choice: Z2, AS#0 at Z1', async () => {
      z2.impersonation = 'allowed';
      const res = await get('/impersonate', z2.issueToken(baseClaims(z2, { sub: 'bob' })));
      expect(res.status).toBe(200);
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 1]);
      expect(z2.tokenRequests[0].form.subject_token).toBe('bob');
      expect(basicUser(z2.tokenRequests[0].headers.authorization)).toBe('svc-2');
    });

    it('O17 (b) from a job with no request → TokenExchangeError zone_required before any request (AS#0 at both), for both services', async () => {
      const before = [requestsTo(z1), requestsTo(z2)];
      const asService = await api.app.get(ClientCredentialsService).token({ resource: R2 }).then(() => undefined, (e: unknown) => e);
      const impersonation = await api.app.get(ImpersonationService).impersonate({ user: 'bob', resource: R2 }).then(() => undefined, (e: unknown) => e);
      for (const error of [asService, impersonation]) {
        expect(error).toBeInstanceOf(TokenExchangeError);
        expect((error as TokenExchangeError).kind).toBe('zone_required');
        expect((error as TokenExchangeError).retryable).toBe(false);
      }
      expect([requestsTo(z1), requestsTo(z2)]).toEqual(before);
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 0]);
      // An explicit zone is still honoured from a job.
      await api.app.get(ClientCredentialsService).token({ resource: R2, zone: z2.issuer });
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 1]);
    });

    it('O17 (b) a @Public() route is no verified request: zone_required, answered 500 misconfigured, nothing sent', async () => {
      const res = await get('/as-service/public', z2.issueToken(baseClaims(z2)));
      expect(res.status).toBe(500);
      expect(res.json).toEqual({ error: 'server_error', error_description: 'The service is misconfigured' });
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 0]);
    });
  });

  describe('TokenExchangeService', () => {
    let contexts: Awaited<ReturnType<typeof startExchangeContext>>[] = [];
    afterEach(async () => {
      await Promise.all(contexts.map((c) => c.close()));
      contexts = [];
      for (const zone of [z1, z2, stranger]) zone.reset();
    });

    async function service() {
      const started = await startExchangeContext({ zones: zonesWithCredentials(z1, z2) });
      contexts.push(started);
      return started;
    }

    it('S5 subject tokens from Z1 and Z2 → each exchange goes to its own zone with its own credentials', async () => {
      const { service: exchange, logger } = await service();
      const s1 = z1.issueToken({ sub: 'alice', client_id: 'user-app' });
      const s2 = z2.issueToken({ sub: 'bob', client_id: 'user-app' });
      const t1 = await exchange.exchange({ subjectToken: s1, resource: R2, scope: 'invoices:read' });
      expect([z1.counts.token, z2.counts.token]).toEqual([1, 0]);
      const t2 = await exchange.exchange({ subjectToken: s2, resource: R2, scope: 'invoices:read' });
      expect([z1.counts.token, z2.counts.token]).toEqual([1, 1]);
      expect(basicUser(z1.tokenRequests[0].headers.authorization)).toBe('svc-1');
      expect(basicUser(z2.tokenRequests[0].headers.authorization)).toBe('svc-2');
      expect(z1.tokenRequests[0].form.subject_token).toBe(s1);
      expect(z2.tokenRequests[0].form.subject_token).toBe(s2);
      expect(z1.verifyOwnToken(t1.accessToken)).toBeDefined();
      expect(z2.verifyOwnToken(t2.accessToken)).toBeDefined();
      for (const secret of [s1, s2, t1.accessToken, t2.accessToken, 'secret-of-zone-1', 'secret-of-zone-2']) {
        expect(logger.lines.some((l) => l.includes(secret))).toBe(false);
      }
    });

    it('S5 a subject token from an unknown issuer → typed error before any request', async () => {
      const { service: exchange } = await service();
      const foreign = stranger.issueToken({ sub: 'mallory' });
      const opaque = 'opaque-token-without-iss';
      const before = [requestsTo(z1), requestsTo(z2), requestsTo(stranger)];
      for (const subjectToken of [foreign, opaque, z1.issueToken({ iss: `${z1.issuer}/` })]) {
        const error = await exchange.exchange({ subjectToken, resource: R2 }).then(() => undefined, (e: unknown) => e);
        expect(error).toBeInstanceOf(TokenExchangeError);
        expect((error as TokenExchangeError).kind).toBe('untrusted_issuer');
        expect((error as TokenExchangeError).retryable).toBe(false);
        expect((error as Error).message).not.toContain(subjectToken);
      }
      expect([requestsTo(z1), requestsTo(z2), requestsTo(stranger)]).toEqual(before);
    });

    it('S5 client credentials: zone Z2 → Z2\'s token endpoint with Z2\'s credentials; zone Z1 → Z1\'s; a Z1 token is never served for Z2', async () => {
      const { context, logger } = await service();
      const asService = context.get(ClientCredentialsService);
      const first = await asService.token({ resource: R2, scope: 'invoices:read', zone: z1.issuer });
      expect([z1.counts.token, z2.counts.token]).toEqual([1, 0]);
      const fromZ2 = await asService.token({ resource: R2, scope: 'invoices:read', zone: z2.issuer });
      expect([z1.counts.token, z2.counts.token]).toEqual([1, 1]);
      expect(fromZ2.accessToken).not.toBe(first.accessToken);
      expect(z2.tokenRequests[0].form).toEqual({ grant_type: 'client_credentials', resource: R2, scope: 'invoices:read' });
      expect(basicUser(z1.tokenRequests[0].headers.authorization)).toBe('svc-1');
      expect(basicUser(z2.tokenRequests[0].headers.authorization)).toBe('svc-2');
      expect(z2.verifyOwnToken(fromZ2.accessToken)).toMatchObject({ sub: 'svc-2' });
      // Each zone's entry is its own: both served from the cache now.
      expect((await asService.token({ resource: R2, scope: 'invoices:read', zone: z1.issuer })).accessToken).toBe(first.accessToken);
      expect((await asService.token({ resource: R2, scope: 'invoices:read', zone: z2.issuer })).accessToken).toBe(fromZ2.accessToken);
      expect([z1.counts.token, z2.counts.token]).toEqual([1, 1]);
      for (const secret of [first.accessToken, fromZ2.accessToken, 'secret-of-zone-1', 'secret-of-zone-2']) {
        expect(logger.lines.some((l) => l.includes(secret))).toBe(false);
      }
    });

    it('S5 impersonation at the user\'s zone with that zone\'s credentials; several zones and no zone → zone_required (Q22), unknown zone → untrusted_issuer, both before any request', async () => {
      const { context } = await service();
      const impersonation = context.get(ImpersonationService);
      z2.impersonation = 'allowed';
      const token = await impersonation.impersonate({ user: 'bob', resource: R2, scope: 'invoices:read', zone: z2.issuer });
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 1]);
      expect(basicUser(z2.tokenRequests[0].headers.authorization)).toBe('svc-2');
      expect(z2.tokenRequests[0].form.subject_token).toBe('bob');
      expect(z2.verifyOwnToken(token.accessToken)).toMatchObject({ sub: 'bob' });

      const before = [requestsTo(z1), requestsTo(z2), requestsTo(stranger)];
      const missing = await impersonation.impersonate({ user: 'bob', resource: R2 }).then(() => undefined, (e: unknown) => e);
      expect(missing).toBeInstanceOf(TokenExchangeError);
      expect((missing as TokenExchangeError).kind).toBe('zone_required');
      expect((missing as Error).message).toContain("'zone'");
      for (const zone of [stranger.issuer, `${z2.issuer}/`]) {
        const error = await impersonation.impersonate({ user: 'bob', resource: R2, zone }).then(() => undefined, (e: unknown) => e);
        expect(error).toBeInstanceOf(TokenExchangeError);
        expect((error as TokenExchangeError).kind).toBe('untrusted_issuer');
        const viaService = await context.get(ClientCredentialsService).token({ resource: R2, zone }).then(() => undefined, (e: unknown) => e);
        expect((viaService as TokenExchangeError).kind).toBe('untrusted_issuer');
      }
      expect([requestsTo(z1), requestsTo(z2), requestsTo(stranger)]).toEqual(before);
    });
  });
});
