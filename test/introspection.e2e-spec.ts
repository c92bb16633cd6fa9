/**
 * Catalogue §X, RFC 7662 token introspection (X29–X35) and §H row H28: routes that declare
 * `@RequireFreshness()` ask the zone about their token; opaque tokens are accepted through
 * introspection when enabled. A real Nest app on loopback, the real local zone (its introspection
 * endpoint steered per test), real HTTP. Every refusal is checked for its status, challenge and
 * that neither the token nor the client secret leaked into the answer or the logs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { Query, Resolver } from '@nestjs/graphql';
import { Agent, DpopKey, KeycardConnections, KeycardModule, KeycardRevocationModule, RequireFreshness, RequireScopes, RevocationService, WorkloadIdentity, type AgentContext, type KeycardModuleOptions } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { dpopHeaders, expectDpopRefusal } from './support/dpop.js';
import { bearer, PRM, R } from './support/forge.js';
import { send, type HttpAnswer } from './support/http.js';
import { askOverSocketIo, askOverWs } from './support/gateway-clients.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { ADAPTERS, CapturingLogger, startApp, type AdapterName, type RunningApp } from './support/keycard-app.js';

const R2 = `${R}/orders`;
const PRM2 = `${R}/.well-known/oauth-protected-resource/orders`;
const R3 = `${R}/tenant2`;
const CLIENT = { clientId: 'api', clientSecret: 'api-secret-do-not-log' };
const INACTIVE = 'The access token is not active';

@Controller()
class FreshnessController {
  @Get('plain')
  @RequireScopes('read')
  plain(@Agent() agent: AgentContext) {
    return { clientId: agent.clientId, subject: agent.subject, scopes: agent.scopes };
  }

  @Get('fresh/read')
  @RequireFreshness()
  @RequireScopes('read')
  read(@Agent() agent: AgentContext) {
    return { clientId: agent.clientId, scopes: agent.scopes };
  }

  @Get('fresh/write')
  @RequireFreshness()
  @RequireScopes('write')
  write() {
    return { written: true };
  }

  /** Under resource R2 (`https://api.example.com/orders`). */
  @Get('orders/fresh')
  @RequireFreshness()
  @RequireScopes('read')
  ordersFresh() {
    return { fresh: true };
  }

  /** Under resource R3, served by the second zone in the several-zone app. */
  @Get('tenant2/fresh')
  @RequireFreshness()
  @RequireScopes('read')
  tenant2() {
    return { fresh: true };
  }
}

/** A resolver that demands freshness (GraphQL over HTTP carries its token on every operation). */
@Resolver()
class FreshResolver {
  @Query(() => String)
  @RequireFreshness()
  @RequireScopes('read')
  freshOrders(): string {
    return 'fresh';
  }
}

/** A gateway message that demands freshness: judged with the token its connection opened with. */
@WebSocketGateway()
class FreshGateway {
  @RequireFreshness()
  @RequireScopes('read')
  @SubscribeMessage('fresh')
  fresh(@Agent('clientId') clientId: string) {
    return { event: 'fresh', data: clientId };
  }
}

let zone: TestZone;
let zone2: TestZone;
const running: RunningApp[] = [];

beforeAll(async () => {
  zone = await TestZone.start({ audience: R, clients: [CLIENT] });
  zone2 = await TestZone.start({ audience: R3, clients: [CLIENT] });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((app) => app.close()));
  zone.reset();
  zone2.reset();
});
afterAll(async () => {
  await zone?.stop();
  await zone2?.stop();
});

async function api(options: Partial<KeycardModuleOptions> = {}, adapter: AdapterName = 'express', extra: Parameters<typeof startApp>[2] = {}): Promise<RunningApp> {
  const app = await startApp(
    adapter,
    { zoneUrl: zone.issuer, resource: [R, R2], clientCredentials: CLIENT, clockToleranceSeconds: 0, ...options } as KeycardModuleOptions,
    { controllers: [FreshnessController], ...extra },
  );
  running.push(app);
  return app;
}

const get = (app: RunningApp, token: string, path = '/fresh/read') => send(app.url, 'GET', path, bearer(token));
const now = () => Math.floor(Date.now() / 1000);

/** A refusal as the catalogue writes it, with nothing of the token or our secret in the answer or the logs. */
function expectRefused(res: HttpAnswer, outcome: Parameters<typeof expectOutcome>[1], app: RunningApp, token: string, prm = PRM): void {
  expectOutcome(res, outcome, prm, [token, CLIENT.clientSecret], app.logger.lines);
}

describe('§X introspection (RFC 7662) on routes that demand freshness', () => {
  it.each(ADAPTERS)('X29 (%s) one POST per request to the introspection_endpoint, token in the form only, client authentication as the exchange; active → 200, then inactive → 401 IT', async (adapter) => {
    const app = await api({}, adapter);
    const token = zone.issueToken({ scope: 'read' });
    expect((await get(app, token)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(1);
    const [request] = zone.introspection.requests;
    expect(request.url).toBe('/introspect');
    expect(request.form).toEqual({ token, token_type_hint: 'access_token' });
    const basic = Buffer.from(`${CLIENT.clientId}:${CLIENT.clientSecret}`).toString('base64');
    expect(request.headers.authorization).toBe(`Basic ${basic}`);
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect((await get(app, token)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(2);

    zone.introspection.answerFor(token, { active: false });
    const res = await get(app, token);
    expectRefused(res, '401 IT scope=read', app, token);
    expect((res.json as { error_description: string }).error_description).toBe(INACTIVE);
    expect(zone.introspection.requests).toHaveLength(3);
    // A route that does not demand freshness never asks the zone.
    expect((await get(app, token, '/plain')).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(3);
    expect(zone.metadata().introspection_endpoint).toBe(`${zone.origin}/introspect`);
  });

  it('X30 the cache is keyed by token and zone, and every hit is judged again: another requirement → 403, another resource → 401, another zone → asked there', async () => {
    const app = await api({ introspection: { maxAgeSeconds: 30 } });
    const token = zone.issueToken({ scope: 'read', aud: [R, R2] });
    const claims = zone.verifyOwnToken(token)!;
    zone.introspection.answerFor(token, { ...claims, active: true, aud: R });
    expect((await get(app, token)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(1);
    expectRefused(await get(app, token, '/fresh/write'), '403:write', app, token);
    // The cached answer names R only: on a route of R2 it is refused, never taken as A's verdict.
    expectRefused(await get(app, token, '/orders/fresh'), '401 IT scope=read', app, token, PRM2);
    expect(zone.introspection.requests).toHaveLength(1);
    expect((await get(app, token)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(1);
  });

  it('X30 (several zones) an opaque token answered by one zone is introspected again at the zone of another route, never served from the first entry', async () => {
    const app = await api({
      zoneUrl: undefined,
      resource: undefined,
      zones: [{ zoneUrl: zone.issuer, resource: [R, R2] }, { zoneUrl: zone2.issuer, resource: R3 }],
      opaqueTokens: 'introspect',
      introspection: { maxAgeSeconds: 30 },
    });
    const opaque = zone.issueOpaqueToken({ scope: 'read' });
    expect((await get(app, opaque)).status).toBe(200);
    expect((await get(app, opaque)).status).toBe(200);
    expect([zone.introspection.requests.length, zone2.introspection.requests.length]).toEqual([1, 0]);
    expectRefused(await get(app, opaque, '/tenant2/fresh'), '401 IT scope=read', app, opaque, `${R}/.well-known/oauth-protected-resource/tenant2`);
    expect([zone.introspection.requests.length, zone2.introspection.requests.length]).toEqual([1, 1]);
    expect(zone2.introspection.requests[0].form.token).toBe(opaque);
  });

  it('X31 an answer is never used past the token exp, and an answer without exp is never kept', async () => {
    const app = await api({ introspection: { maxAgeSeconds: 30 }, opaqueTokens: 'introspect' });
    const jwt = zone.issueToken({ scope: 'read', exp: now() + 10 });
    expect((await get(app, jwt)).status).toBe(200);
    expect((await get(app, jwt)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(1);
    const opaque = zone.issueOpaqueToken({ scope: 'read', exp: now() + 10 });
    expect((await get(app, opaque)).status).toBe(200);
    expect((await get(app, opaque)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(2);

    app.clock.offsetMs = 12_000;
    expectRefused(await get(app, jwt), '401 IT scope=read', app, jwt);
    expect(zone.introspection.requests).toHaveLength(2); // expired: the entry is not consulted, the zone not asked
    expectRefused(await get(app, opaque), '401 IT scope=read', app, opaque);
    expect(zone.introspection.requests).toHaveLength(3); // the entry ended at exp: asked again, and the answer's exp has passed
    app.clock.offsetMs = 0;

    const endless = zone.issueOpaqueToken({ scope: 'read', exp: undefined });
    expect((await get(app, endless)).status).toBe(200);
    expect((await get(app, endless)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(5);
  });

  it('X32 500, a timeout (5 s), active "yes", text/html, a redirect → 503 RA, never cached', async () => {
    const app = await api({ introspection: { maxAgeSeconds: 30 } });
    const faults = [
      { kind: 'status', status: 500 },
      { kind: 'hang' },
      { kind: 'json', body: { active: 'yes', exp: now() + 60 } },
      { kind: 'status', status: 200, contentType: 'text/html', body: '<html>{"active":true}</html>' },
      { kind: 'redirect', location: `${zone.origin}/elsewhere` },
    ] as const;
    for (const fault of faults) {
      const token = zone.issueToken({ scope: 'read' });
      zone.faults.introspection = { ...fault } as (typeof zone.faults)['introspection'];
      expectRefused(await get(app, token), '503 RA', app, token);
      delete zone.faults.introspection;
      const asked = zone.introspection.requests.length;
      expect((await get(app, token)).status).toBe(200); // the failure was not kept
      expect(zone.introspection.requests).toHaveLength(asked + 1);
    }
    expect(zone.counts.introspection).toBe(faults.length * 2);
  }, 30_000);

  it('X32 client credentials that never come (a workload token source that never answers) → 503 RA at the 5 s deadline, the zone never asked, not a request held for ever', async () => {
    const app = await api({ clientCredentials: new WorkloadIdentity({ source: () => new Promise<string>(() => undefined), clientId: CLIENT.clientId }) });
    const token = zone.issueToken({ scope: 'read' });
    const answers = await Promise.all([get(app, token), get(app, token)]);
    for (const res of answers) expectRefused(res, '503 RA', app, token);
    expect(zone.counts.introspection).toBe(0);
  }, 15_000);

  it('X32 (I5) a workload token file that is missing, then empty → 503 RA as for the exchange, the zone never asked, the path logged but never a token', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'keycard-x32-')), 'token');
    const app = await api({ clientCredentials: new WorkloadIdentity({ tokenFile: path, clientId: CLIENT.clientId }) });
    const token = zone.issueToken({ scope: 'read' });
    expectRefused(await get(app, token), '503 RA', app, token);
    writeFileSync(path, '  \n');
    expectRefused(await get(app, token), '503 RA', app, token);
    expect(zone.counts.introspection).toBe(0);
    expect(app.logger.lines.some((line) => line.includes(path))).toBe(true);
    rmSync(dirname(path), { recursive: true, force: true });
  });

  it('I7 two introspections in flight across a workload token rotation: the one refused invalid_client retries with the rotated token, though the other read it first', async () => {
    let current = 'wi-v1-do-not-log';
    zone.addClient({ clientId: 'api-wi', acceptAssertion: (assertion) => assertion === current });
    const app = await api({ clientCredentials: new WorkloadIdentity({ source: () => current, clientId: 'api-wi' }) });
    // Every answer waits a second (the client is judged after the wait), so the second request reads
    // the rotated token while the first is in flight with the old one.
    zone.faults.introspection = { kind: 'slow', delayMs: 1_000 };
    const [first, second] = [zone.issueToken({ scope: 'read' }), zone.issueToken({ scope: 'read' })];
    const answered = get(app, first);
    while (zone.introspection.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    current = 'wi-v2-do-not-log'; // the platform rotates the token; the zone no longer takes v1
    const [one, two] = await Promise.all([answered, get(app, second)]);
    expect([one.status, two.status]).toEqual([200, 200]);
    expect(zone.introspection.requests.map((r) => r.form.client_assertion).sort()).toEqual(['wi-v1-do-not-log', 'wi-v2-do-not-log', 'wi-v2-do-not-log']);
    expect(app.logger.lines.join('\n')).not.toMatch(/wi-v[12]|do-not-log/);
  }, 15_000);

  it.each(GRAPHQL_SERVERS)('X29 (GraphQL, %s) a resolver that demands freshness: active → data; inactive → UNAUTHENTICATED with the 401 challenge, one POST each', async (_name, server) => {
    const app = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, clientCredentials: CLIENT }, { providers: [FreshResolver] });
    try {
      const token = zone.issueToken({ scope: 'read' });
      const served = await postGraphQL(app.url, '{ freshOrders }', token);
      expect(served.body.data).toEqual({ freshOrders: 'fresh' });
      expect(zone.introspection.requests.map((request) => request.form.token)).toEqual([token]);
      zone.introspection.answerFor(token, { active: false });
      const refused = await postGraphQL(app.url, '{ freshOrders }', token);
      expect(refused.status).toBe(401);
      expect(refused.challenge?.params).toMatchObject({ error: 'invalid_token', error_description: INACTIVE, scope: 'read', resource_metadata: PRM });
      expect(refused.body.errors?.[0]?.extensions).toMatchObject({ code: 'UNAUTHENTICATED', error: 'invalid_token' });
      expect(zone.introspection.requests).toHaveLength(2);
      for (const secret of [token, CLIENT.clientSecret]) {
        expect(refused.text.includes(secret)).toBe(false);
        expect(app.logger.lines.some((line) => line.includes(secret))).toBe(false);
      }
    } finally {
      await app.close();
    }
  });

  it.each(['ws', 'socket.io'] as const)('X29 (%s) a gateway message that demands freshness introspects the token its connection opened with: active → served; inactive → exception invalid_token', async (platform) => {
    const logger = new CapturingLogger();
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, clientCredentials: CLIENT, logger })], providers: [FreshGateway] })
    class GatewayModule {}
    const app: INestApplication = await NestFactory.create(GatewayModule, { logger: false, abortOnError: false });
    try {
      app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
      await app.listen(0, '127.0.0.1');
      const { port } = app.getHttpServer().address() as { port: number };
      const ask = platform === 'ws' ? askOverWs : askOverSocketIo;
      const token = zone.issueToken({ scope: 'read' });
      expect(await ask(port, token, 'fresh')).toEqual({ event: 'fresh', data: 'cli-1' });
      expect(zone.introspection.requests.map((request) => request.form.token)).toEqual([token]);
      zone.introspection.answerFor(token, { active: false });
      expect(await ask(port, token, 'fresh')).toEqual({ event: 'exception', data: expect.objectContaining({ error: 'invalid_token', error_description: INACTIVE }) });
      expect(zone.introspection.requests).toHaveLength(2);
      expect(logger.lines.some((line) => line.includes(token) || line.includes(CLIENT.clientSecret))).toBe(false);
    } finally {
      await app.close();
    }
  });

  it('X29 a route that demands freshness without clientCredentials fails the bootstrap, naming the zone', async () => {
    await expect(api({ clientCredentials: undefined })).rejects.toThrow(/@RequireFreshness\(\) introspects tokens .* 'clientCredentials'/);
  });

  it('X32 our client credentials refused (401 invalid_client) → 500 and one error log line, the credentials never logged', async () => {
    const wrong = { clientId: 'api', clientSecret: 'wrong-secret-do-not-log' };
    const app = await api({ clientCredentials: wrong });
    const token = zone.issueToken({ scope: 'read' });
    for (let i = 0; i < 2; i++) {
      const res = await get(app, token);
      expect(res.status).toBe(500);
      expect(res.headers['www-authenticate']).toBeUndefined();
      expect(res.json).toEqual({ error: 'server_error', error_description: 'The resource server is misconfigured' });
      for (const secret of [token, wrong.clientSecret, Buffer.from(`api:${wrong.clientSecret}`).toString('base64')]) {
        expect(res.text.includes(secret)).toBe(false);
        expect(app.logger.lines.some((line) => line.includes(secret))).toBe(false);
      }
    }
    expect(app.logger.levels.error.filter((line) => line.includes('introspection'))).toHaveLength(1);
    expect(app.logger.levels.error[0]).toMatch(/refused our client credentials/);
  });

  it('X34 50 concurrent requests with the same new token → 1 introspection, 50 answers', async () => {
    const app = await api({ introspection: { maxAgeSeconds: 5 } });
    const token = zone.issueToken({ scope: 'read' });
    zone.faults.introspection = { kind: 'slow', delayMs: 200 };
    const answers = await Promise.all(Array.from({ length: 50 }, () => get(app, token)));
    expect(answers.map((res) => res.status)).toEqual(Array(50).fill(200));
    expect(zone.introspection.requests).toHaveLength(1);
  });

  it('X35 a revoked session on a freshness route whose zone says active → 401 IT revoked, the zone never asked', async () => {
    const app = await api({}, 'express', { imports: [KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: 3600 })] });
    const token = zone.issueToken({ scope: 'read', sid: 'sid-1' });
    zone.introspection.answerFor(token, { ...zone.verifyOwnToken(token), active: true });
    await app.app.get(RevocationService).revoke({ issuer: zone.issuer, sessionId: 'sid-1' });
    const res = await get(app, token);
    expectRefused(res, '401 IT scope=read', app, token);
    expect((res.json as { error_description: string }).error_description).toBe('The access token has been revoked');
    expect(zone.introspection.requests).toHaveLength(0);
    const other = zone.issueToken({ scope: 'read', sid: 'sid-2' });
    expect((await get(app, other)).status).toBe(200);
    expect(zone.introspection.requests).toHaveLength(1);
  });
});

describe('§X opaque tokens through introspection', () => {
  it('X33 opaque tokens on: the agent from the answer; aud missing, aud of another resource, iss of another zone → 401 IT; opaque tokens off → 401 IT, the zone never asked', async () => {
    const app = await api({ opaqueTokens: 'introspect' });
    const answer = { aud: R, iss: zone.issuer, sub: 'u', client_id: 'c', scope: 'read', exp: now() + 60 };
    const opaque = zone.issueOpaqueToken(answer);
    expect(opaque).not.toContain('.');
    const res = await get(app, opaque, '/plain');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ clientId: 'c', subject: 'u', scopes: ['read'] });
    for (const variant of [{ aud: undefined }, { aud: 'https://other' }, { iss: zone2.issuer }]) {
      const token = zone.issueOpaqueToken({ ...answer, ...variant });
      expectRefused(await get(app, token, '/plain'), '401 IT scope=read', app, token);
    }
    expect(zone.introspection.requests).toHaveLength(4);

    const off = await api();
    expectRefused(await get(off, opaque, '/plain'), '401 IT scope=read', off, opaque);
    expect(zone.introspection.requests).toHaveLength(4);
  });

  it('X33 opaque tokens need clientCredentials and one zone per resource (bootstrap errors naming the option)', async () => {
    await expect(api({ opaqueTokens: 'introspect', clientCredentials: undefined })).rejects.toThrow(/'opaqueTokens' needs 'clientCredentials'/);
    await expect(api({ zoneUrl: undefined, resource: R, zones: [zone.issuer, zone2.issuer], opaqueTokens: 'introspect' })).rejects.toThrow(/'opaqueTokens' needs exactly one zone per resource/);
  });
});

describe('§H DPoP-bound opaque tokens under introspection', () => {
  const key = DpopKey.generate('ES256');
  const other = DpopKey.generate('ES256');
  let app: RunningApp;

  beforeAll(async () => {
    app = await startApp('express', { zoneUrl: zone.issuer, resource: R, clientCredentials: CLIENT, opaqueTokens: 'introspect', dpop: 'allowed' });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('H28 the answer carries cnf.jkt: a proof by that key → 200; by another key → 401 DPoP invalid_token; the Bearer scheme → 401 IT', async () => {
    const opaque = zone.issueOpaqueToken({ scope: 'orders:read', cnf: { jkt: key.thumbprint } });
    expect((await send(app.url, 'GET', '/orders', dpopHeaders(key, opaque))).status).toBe(200);
    const wrongKey = dpopHeaders(other, opaque);
    expectDpopRefusal(await send(app.url, 'GET', '/orders', wrongKey), {
      dpopError: 'invalid_token', description: 'Invalid DPoP key binding', prm: PRM, secrets: [opaque, wrongKey[1][1], CLIENT.clientSecret], logs: app.logger.lines, algs: 'ES256 PS256',
    });
    expectDpopRefusal(await send(app.url, 'GET', '/orders', bearer(opaque)), {
      bearerError: 'invalid_token', prm: PRM, secrets: [opaque, CLIENT.clientSecret], logs: app.logger.lines, algs: 'ES256 PS256',
    });
  });
});
