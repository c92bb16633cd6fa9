/**
 * Trial (attack) of the recent exchange-failure work: a failed token exchange answered in every
 * door's own shape (GraphQL Apollo / Mercurius, socket.io / ws, gRPC, an HTTP route next to them),
 * the workload token file (503 + Retry-After, opened O_NONBLOCK and fstat-ed), the DPoP token_type
 * check and the once-a-minute log gate of 500s. Real Nest apps over loopback, the real TestZone, real
 * clients. Tests whose name starts "held:" or "observed:" are attacks that held (or behaviour
 * pinned); the others were findings, fixed since (each failed before its fix).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { type ArgumentsHost, Catch, Controller, Get, type ExceptionFilter, type INestApplication, Sse, UseFilters } from '@nestjs/common';
import { Query, Resolver, Subscription } from '@nestjs/graphql';
import { interval, lastValueFrom, map, of, take } from 'rxjs';
import { io } from 'socket.io-client';
import { GrpcMethod, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { BaseWsExceptionFilter, SubscribeMessage, WebSocketGateway, WsException } from '@nestjs/websockets';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { APP_FILTER } from '@nestjs/core';
import {
  Access, type AccessContext, Grant, KeycardConnections, RequireFreshness, ResourceAccessError, TokenExchangeError, WorkloadIdentity,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { R } from './support/forge.js';
import { freePort } from './support/free-port.js';
import { askOverSocketIo, askOverWs } from './support/gateway-clients.js';
import { acknowledgedGraphQLWs, firstGraphQLWsResult, GRAPHQL_SERVERS, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';
import { findOrder, type listenHybrid } from './support/rpc-app.js';
import { callToolWithToken, startMcpApp } from './support/mcp-app.js';
import { McpController, Tool } from '@rekog/mcp-nest';

const UP = 'https://upstream.example.com';
const SECRET = 'trial-doors-client-secret-8c1e';
const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
/** What the zone writes in its own error answers: no client and no log line may carry it. */
const ZONE_TEXT = 'zone-private-trial-doors-7d2a';

const BAD_GATEWAY_TEXT = 'The authorization server answered unexpectedly';
const UNAVAILABLE_TEXT = 'The authorization server is unavailable, retry later';
const MISCONFIGURED_TEXT = 'The service is misconfigured';

/** A zone answering 500 text/plain: 502 bad_gateway for the API's caller, an outage logged per call. */
const ZONE_500 = { kind: 'status', status: 500, body: ZONE_TEXT, contentType: 'text/plain' } as const;
/** A zone overloaded for longer than the API retries: 503 + Retry-After for the API's caller. */
const ZONE_503 = { kind: 'status', status: 503, headers: { 'retry-after': '600' }, body: JSON.stringify({ error: 'temporarily_unavailable', error_description: ZONE_TEXT }) } as const;

/** An app-defined failure, thrown by a handler as a TokenExchangeError of its own making. */
class UpstreamQuotaError extends TokenExchangeError {
  constructor(user: string) {
    // An app puts whatever it knows in its message (here a user's address); the retry hint is its own.
    super(`quota of ${user} exhausted upstream`, 'unavailable', undefined, 503, 2.5);
    this.name = 'UpstreamQuotaError';
  }
}

@Resolver()
class TrialResolver {
  @Grant(UP, 'up:read')
  @Query(() => String, { nullable: true })
  upstream(@Access() access: AccessContext): string {
    return `granted ${access.access(UP).scope}`;
  }

  /** A misconfiguration (500) the handler meets without asking the zone. */
  @Query(() => String, { nullable: true })
  misconfigured(): string {
    throw new TokenExchangeError('no clientCredentials for the zone', 'config');
  }

  /** An outage (503) the handler meets: logged per call, whatever else failed in the operation. */
  @Query(() => String, { nullable: true })
  outage(): string {
    throw new TokenExchangeError('the token endpoint could not be reached', 'unavailable', undefined, 503, 30);
  }

  /** An app's own subclass with a fractional retry hint and a message naming a user. */
  @Query(() => String, { nullable: true })
  quota(): string {
    throw new UpstreamQuotaError('alice@example.com');
  }

  /** A grant's error built by hand without its cause (as a handler might rethrow a copy). */
  @Query(() => String, { nullable: true })
  causeless(): string {
    throw new ResourceAccessError(UP, 'exchange_failed');
  }

  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  async *upstreamTicks(@Access() access: AccessContext): AsyncGenerator<{ upstreamTicks: string }> {
    yield { upstreamTicks: `granted ${access.access(UP).scope}` };
  }

  /** The same subscription, but the grant's error is rethrown by the resolver itself, before any event. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  checkedTicks(@Access() access: AccessContext): AsyncGenerator<{ checkedTicks: string }> {
    const scope = access.access(UP).scope;
    return (async function* () {
      yield { checkedTicks: `granted ${scope}` };
    })();
  }
}

/** A gateway whose own filter catches only WsException: the module's must still answer a failed exchange. */
@Catch(WsException)
class NarrowGatewayFilter extends BaseWsExceptionFilter {}

@UseFilters(new NarrowGatewayFilter())
@WebSocketGateway()
class TrialGateway {
  @Grant(UP, 'up:read')
  @SubscribeMessage('upstream')
  upstream(@Access() access: AccessContext) {
    return { event: 'upstream', data: `granted ${access.access(UP).scope}` };
  }
}

/** One gateway class served by two apps of one process. */
@WebSocketGateway()
class SharedGateway {
  @Grant(UP, 'up:read')
  @SubscribeMessage('upstream')
  upstream(@Access() access: AccessContext) {
    return { event: 'upstream', data: `granted ${access.access(UP).scope}` };
  }
}

@Controller()
class TrialController {
  @Grant(UP, 'up:read')
  @Get('granted')
  granted(@Access() access: AccessContext) {
    return { scope: access.access(UP).scope };
  }

  @Get('quota')
  quota() {
    throw new UpstreamQuotaError('alice@example.com');
  }

  /** SSE: the grant's error rethrown when the stream's first event is made (after the response head). */
  @Grant(UP, 'up:read')
  @Sse('events')
  events(@Access() access: AccessContext) {
    return interval(10).pipe(take(2), map((n) => ({ data: { n, scope: access.access(UP).scope } })));
  }

  /** SSE: the grant's error rethrown by the handler before it returns its stream. */
  @Grant(UP, 'up:read')
  @Sse('checked-events')
  checkedEvents(@Access() access: AccessContext) {
    const scope = access.access(UP).scope;
    return interval(10).pipe(take(2), map((n) => ({ data: { n, scope } })));
  }

  @RequireFreshness()
  @Get('fresh')
  fresh() {
    return { fresh: true };
  }
}

@Controller()
class TrialRpcController {
  @Grant(UP, 'up:read')
  @GrpcMethod('Orders', 'Find')
  find(@Payload() request: { id: string }, @Access() access: AccessContext) {
    return { id: request.id, by: access.access(UP).scope };
  }

  @Grant(UP, 'up:read')
  @MessagePattern('orders.find')
  findTcp(@Payload() request: { id: string }, @Access() access: AccessContext) {
    return { id: request.id, by: access.access(UP).scope };
  }

  @Grant(UP, 'up:read')
  @GrpcMethod('Orders', 'Tail')
  tail(@Payload() request: { id: string }, @Access() access: AccessContext) {
    return of({ id: request.id, by: access.access(UP).scope });
  }

  @GrpcMethod('Orders', 'Place')
  place() {
    throw new UpstreamQuotaError('alice@example.com');
  }
}

/** mcp-nest tools with a grant, shared by the MCP apps of the suite. */
@McpController()
class TrialTools {
  @Tool({ name: 'upstream', description: 'Calls the upstream API for the user' })
  @Grant(UP, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { by: access.access(UP).scope };
  }
}

/** The same tool, on a class only the two-apps test serves (so no earlier app of the suite bound its filter to it). */
@McpController()
class SharedTools {
  @Tool({ name: 'shared_upstream', description: 'Calls the upstream API for the user' })
  @Grant(UP, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { by: access.access(UP).scope };
  }
}

/** An app's own catch-all filter, registered with useGlobalFilters(). */
@Catch()
class AppCatchAllFilter implements ExceptionFilter {
  readonly caught: string[] = [];
  catch(error: unknown, host: ArgumentsHost) {
    this.caught.push((error as Error)?.name);
    const response = host.switchToHttp().getResponse<{ status(code: number): { json(body: unknown): void } }>();
    response.status(500).json({ app: 'caught', name: (error as Error)?.name });
  }
}

/** `{ f0: field f1: field … }` with `n` aliases. */
function aliases(field: string, n: number): string {
  return `{ ${Array.from({ length: n }, (_, i) => `f${i}: ${field}`).join(' ')} }`;
}

describe('trial: a failed exchange in every door', () => {
  let zone: TestZone;
  const keycard = () => ({ zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'svc', clientSecret: SECRET } });

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
  });
  beforeEach(() => zone.reset());
  afterAll(async () => {
    await zone?.stop();
  });

  describe.each(GRAPHQL_SERVERS)('GraphQL: %s', (_name, server) => {
    let api: RunningGraphQLApp;
    beforeAll(async () => {
      api = await startGraphQLApp(server, keycard(), {
        providers: [TrialResolver],
        ...(server === 'mercurius' ? { mercuriusSubscription: [] as [] } : {}),
      });
    });
    afterAll(async () => {
      await api?.close();
    });
    const errorsSince = (before: number) => api.logger.levels.error.slice(before);

    it('held: 100 aliases whose grant fails (zone 500) → 100 BAD_GATEWAY errors, status 502, one log line, the zone asked a bounded number of times', async () => {
      zone.faults.token = ZONE_500;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const res = await postGraphQL(api.url, aliases('upstream', 100), token);
      expect(res.body.errors).toHaveLength(100);
      expect(new Set(res.body.errors!.map((e) => `${e.extensions?.code} ${e.message}`))).toEqual(new Set([`BAD_GATEWAY ${BAD_GATEWAY_TEXT}`]));
      expect(res.status).toBe(502);
      expect(errorsSince(before)).toHaveLength(1);
      // One flight per (token, resource, scope): the zone is not asked once per alias.
      expect(zone.counts.token).toBeLessThanOrEqual(2);
      expectNoLeak(res.text, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: a failing grant next to a field that succeeds → partial data, 200, the failed field BAD_GATEWAY', async () => {
      zone.faults.token = ZONE_500;
      const token = zone.issueToken({ scope: 'profile' });
      const res = await postGraphQL(api.url, '{ upstream orders { id } }', token);
      expect(res.body.data).toEqual({ upstream: null, orders: [{ id: 'o-1' }] });
      expect(res.body.errors?.map((e) => [e.path, e.extensions?.code])).toEqual([[['upstream'], 'BAD_GATEWAY']]);
      expect(res.status).toBe(200);
    });

    it('an outage field after a misconfigured one in one operation → the outage (503) still logged (outages are logged per request and reason), though the 500 gate holds the misconfiguration\'s line', async () => {
      // The 500's line is written once per interval: this request uses it up.
      await postGraphQL(api.url, '{ misconfigured }', zone.issueToken({ scope: 'profile' }));
      const before = api.logger.levels.error.length;
      const res = await postGraphQL(api.url, '{ misconfigured outage }', zone.issueToken({ scope: 'profile' }));
      expect(res.body.errors?.map((e) => e.extensions?.code)).toEqual(['INTERNAL_SERVER_ERROR', 'SERVICE_UNAVAILABLE']);
      const lines = errorsSince(before);
      expect(lines.some((line) => /unavailable.*answered 503/.test(line))).toBe(true);
    });

    it('an app\'s TokenExchangeError subclass with retryAfterSeconds 2.5 → Retry-After a whole number of seconds, rounded up (RFC 9110 delay-seconds)', async () => {
      const raw = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${zone.issueToken({ scope: 'profile' })}` },
        body: JSON.stringify({ query: '{ quota }' }),
      });
      const body = (await raw.json()) as { errors: { message: string; extensions: Record<string, unknown> }[] };
      expect(body.errors[0]).toMatchObject({ message: UNAVAILABLE_TEXT, extensions: { code: 'SERVICE_UNAVAILABLE' } });
      expect(raw.status).toBe(503);
      expect(raw.headers.get('retry-after')).toMatch(/^\d+$/);
    });

    it('held: a ResourceAccessError rethrown without its cause → INTERNAL_SERVER_ERROR "misconfigured", logged without a token', async () => {
      const token = zone.issueToken({ scope: 'profile' });
      const res = await postGraphQL(api.url, '{ causeless }', token);
      expect(res.body.errors?.[0]).toMatchObject({ message: MISCONFIGURED_TEXT, extensions: { code: 'INTERNAL_SERVER_ERROR', error: 'server_error' } });
      expectNoLeak(res.text, [token], api.logger.lines);
    });

    it('held: the zone answering token_type "dpop" (lower case) to a request without a proof → BAD_GATEWAY, not served', async () => {
      zone.faults.token = { kind: 'json', body: { access_token: 'bound-elsewhere-1', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'dpop', expires_in: 300 } };
      const res = await postGraphQL(api.url, '{ upstream }', zone.issueToken({ scope: 'profile' }));
      expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_GATEWAY');
      expect(res.text).not.toContain('bound-elsewhere-1');
    });

    // Apollo only: Mercurius answers a query over its subscription socket "Invalid operation: query".
    (server === 'apollo' ? it : it.skip)('the same 100 failing aliases sent over a graphql-ws connection → one log line (a run of identical failures on a connection, as the guard\'s refusals there, O5), not one per field', async () => {
      zone.faults.token = ZONE_500;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const received = await subscribeOnce(server, api.wsUrl, token, aliases('upstream', 100));
      const result = received as { errors?: { extensions?: { code?: string } }[] };
      expect(result.errors).toHaveLength(100);
      expect(result.errors!.every((e) => e.extensions?.code === 'BAD_GATEWAY')).toBe(true);
      expect(errorsSince(before)).toHaveLength(1);
    });

    it('held: a field refused by the zone (invalid_grant) next to one that succeeds → 200, partial data, the 401 challenge as for the guard\'s refusals (Q16)', async () => {
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: ZONE_TEXT }) };
      const res = await postGraphQL(api.url, '{ upstream orders { id } }', zone.issueToken({ scope: 'profile' }));
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual({ upstream: null, orders: [{ id: 'o-1' }] });
      expect(res.body.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect(res.challenge?.params).toMatchObject({ error: 'invalid_token' });
      expect(res.text).not.toContain(ZONE_TEXT);
    });

    it('a field the guard refuses (403 insufficient_scope) next to one whose exchange the zone refuses (401 invalid_grant) → status and challenge agree: 401 + invalid_token (the token itself outranks its scope)', async () => {
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: ZONE_TEXT }) };
      const res = await postGraphQL(api.url, '{ whoami upstream }', zone.issueToken({ scope: 'profile' }));
      const codes = res.body.errors?.map((e) => [e.path?.[0], e.extensions?.code]);
      expect(codes).toEqual(expect.arrayContaining([['whoami', 'FORBIDDEN'], ['upstream', 'UNAUTHENTICATED']]));
      expect({ status: res.status, error: res.challenge?.params.error }).toEqual({ status: 401, error: 'invalid_token' });
      expect(res.text).not.toContain(ZONE_TEXT);
    });

    it('held: a batch (array body) of two operations whose grant fails → each its BAD_GATEWAY error, status 200 (a batch never decides it), one log line', async () => {
      zone.faults.token = ZONE_500;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const raw = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify([{ query: '{ upstream }' }, { query: '{ a: upstream b: upstream }' }]),
      });
      const body = (await raw.json()) as { errors?: { extensions?: { code?: string } }[] }[];
      expect(body.map((answer) => answer.errors?.map((e) => e.extensions?.code))).toEqual([['BAD_GATEWAY'], ['BAD_GATEWAY', 'BAD_GATEWAY']]);
      expect(raw.status).toBe(200);
      expect(errorsSince(before)).toHaveLength(1);
    });

    it('held: the zone never answering → GATEWAY_TIMEOUT, status 504 (the exchange\'s 5 s deadline)', async () => {
      zone.faults.token = { kind: 'hang' };
      const res = await postGraphQL(api.url, '{ upstream }', zone.issueToken({ scope: 'profile' }));
      expect(res.body.errors?.[0]).toMatchObject({ message: 'The authorization server did not answer in time', extensions: { code: 'GATEWAY_TIMEOUT', error: 'gateway_timeout' } });
      expect(res.status).toBe(504);
    }, 20_000);

    it.each([
      ['held: a subscription resolver rethrowing the grant\'s error before its first event', 'checkedTicks'],
      ['a subscription generator rethrowing the grant\'s error in its body (access.access() inside the async generator, after the resolver returned it)', 'upstreamTicks'],
    ])('%s (zone 503) → one GraphQL error SERVICE_UNAVAILABLE, temporarily_unavailable, the fixed text; one error line; nothing leaked', async (_title, field) => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const received = await subscribeOnce(server, api.wsUrl, token, `subscription { ${field} }`);
      // Apollo (graphql-ws) sends a resolver's failure as a `next` result with errors and a failure
      // out of the iterator as an `error` message (its client rejects with `graphql-ws: [errors]`);
      // Mercurius sends both as an `error` message.
      const answer = received as { errors?: unknown[]; payload?: unknown[] | { errors?: unknown[] }; message?: string };
      const payload = Array.isArray(answer.payload) ? answer.payload : answer.payload?.errors;
      const errors = answer.errors ?? payload ?? (JSON.parse(String(answer.message).replace(/^graphql-ws: /, '')) as unknown[]);
      expect(errors).toEqual([
        expect.objectContaining({
          message: UNAVAILABLE_TEXT,
          extensions: { code: 'SERVICE_UNAVAILABLE', error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT },
        }),
      ]);
      expect(errorsSince(before)).toHaveLength(1);
      expectNoLeak(JSON.stringify(received), [token, ZONE_TEXT, SECRET], api.logger.lines);
    });
  });

  describe.each<[string, typeof askOverWs]>([['socket.io', askOverSocketIo], ['ws', askOverWs]])('a %s gateway with its own (narrow) filter', (platform, ask) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp('express', keycard(), {
        controllers: [],
        providers: [TrialGateway],
        configure: (app: INestApplication) => app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app))),
      });
    });
    afterAll(async () => {
      await api?.close();
    });

    it(`held: ${platform}: the gateway's @Catch(WsException) filter does not take the failure; the module answers the exception event temporarily_unavailable, one log line`, async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const answer = await ask(Number(new URL(api.url).port), token, 'upstream');
      expect(answer).toEqual({ event: 'exception', data: { status: 'error', error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT } });
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expectNoLeak(answer, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it(`held: ${platform}: the zone answering 2 MiB → bad_gateway, the body not read past its cap, nothing leaked`, async () => {
      zone.faults.token = { kind: 'oversized', bytes: 2 * 1024 * 1024 };
      const token = zone.issueToken({ scope: 'profile' });
      const answer = await ask(Number(new URL(api.url).port), token, 'upstream');
      expect(answer).toEqual({ event: 'exception', data: { status: 'error', error: 'bad_gateway', error_description: BAD_GATEWAY_TEXT } });
      expectNoLeak(answer, [token, SECRET], api.logger.lines);
    });

    if (platform === 'socket.io') {
      it('held: socket.io emitWithAck: the acknowledgement carries the same refusal (the client does not wait for its timeout)', async () => {
        zone.faults.token = ZONE_503;
        const token = zone.issueToken({ scope: 'profile' });
        const socket = io(`http://127.0.0.1:${new URL(api.url).port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
        try {
          await new Promise<void>((resolve, reject) => {
            socket.once('connect', () => resolve());
            socket.once('connect_error', reject);
          });
          const ack = await socket.timeout(3000).emitWithAck('upstream', {});
          expect(ack).toEqual({ status: 'error', error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT });
        } finally {
          socket.disconnect();
        }
      });
    }
  });

  describe('two Nest apps of one process serving one gateway class (ws)', () => {
    let a: RunningApp;
    let b: RunningApp;
    const start = () =>
      startApp('express', keycard(), {
        controllers: [],
        providers: [SharedGateway],
        configure: (app: INestApplication) => app.useWebSocketAdapter(app.get(KeycardConnections).guard(new WsAdapter(app))),
      });
    beforeAll(async () => {
      a = await start();
      b = await start();
    });
    afterAll(async () => {
      await a?.close();
      await b?.close();
    });

    it('held: a failure on app B is answered and logged by app B, not by app A; after A closes, B still answers', async () => {
      zone.faults.token = ZONE_500;
      const token = zone.issueToken({ scope: 'profile' });
      const [beforeA, beforeB] = [a.logger.levels.error.length, b.logger.levels.error.length];
      const answer = await askOverWs(Number(new URL(b.url).port), token, 'upstream');
      expect(answer).toEqual({ event: 'exception', data: { status: 'error', error: 'bad_gateway', error_description: BAD_GATEWAY_TEXT } });
      expect(a.logger.levels.error.slice(beforeA)).toEqual([]);
      expect(b.logger.levels.error.slice(beforeB)).toHaveLength(1);
      await a.close();
      const again = await askOverWs(Number(new URL(b.url).port), zone.issueToken({ scope: 'profile' }), 'upstream');
      expect(again).toEqual(answer);
    });
  });

  describe('an HTTP app that registered its own catch-all filter (useGlobalFilters)', () => {
    let api: RunningApp;
    const filter = new AppCatchAllFilter();
    beforeAll(async () => {
      api = await startApp('express', keycard(), { controllers: [TrialController], configure: (app) => app.useGlobalFilters(filter) });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('observed: the app\'s catch-all (useGlobalFilters, tried before the module\'s APP_FILTER) takes the failed exchange; nothing of the module answers or logs it', async () => {
      zone.faults.token = ZONE_503;
      const before = api.logger.levels.error.length;
      const res = await send(api.url, 'GET', '/granted', [['Authorization', `Bearer ${zone.issueToken({ scope: 'profile' })}`]]);
      expect({ status: res.status, body: res.json, retryAfter: res.headers['retry-after'] }).toEqual({
        status: 500, body: { app: 'caught', name: 'ResourceAccessError' }, retryAfter: undefined,
      });
      expect(filter.caught).toEqual(['ResourceAccessError']);
      expect(api.logger.levels.error.slice(before)).toEqual([]);
    });
  });

  describe('an HTTP app that registered its own catch-all filter as APP_FILTER', () => {
    let api: RunningApp;
    const filter = new AppCatchAllFilter();
    beforeAll(async () => {
      api = await startApp('express', keycard(), { controllers: [TrialController], providers: [{ provide: APP_FILTER, useValue: filter }] });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('observed: an app catch-all registered as an APP_FILTER provider does not take it: the module\'s filter answers 503 (unlike useGlobalFilters above)', async () => {
      zone.faults.token = ZONE_503;
      const res = await send(api.url, 'GET', '/granted', [['Authorization', `Bearer ${zone.issueToken({ scope: 'profile' })}`]]);
      expect({ status: res.status, body: res.json, caught: filter.caught }).toEqual({
        status: 503, body: { error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT }, caught: [],
      });
    });
  });

  describe('an HTTP app', () => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp('express', keycard(), { controllers: [TrialController] });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('an app\'s TokenExchangeError subclass with retryAfterSeconds 2.5 over HTTP → Retry-After a whole number, rounded up (RFC 9110 delay-seconds)', async () => {
      const res = await send(api.url, 'GET', '/quota', [['Authorization', `Bearer ${zone.issueToken({ scope: 'profile' })}`]]);
      expect(res.status).toBe(503);
      expect(res.text).not.toContain('alice@example.com');
      expect(res.headers['retry-after']).toMatch(/^\d+$/);
    });

    it.each([
      ['rethrown by the handler before it returns its stream', '/checked-events'],
      ['rethrown inside the stream (its first event)', '/events'],
    ])('an @Sse() route whose grant failed (zone 503), %s → the SSE door\'s answer with the fixed fields (before the head: 503 JSON with Retry-After; after it: one `event: error` {"error":"temporarily_unavailable",…}, then the end of the stream), one error line, nothing leaked', async (_name, path) => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const res = await send(api.url, 'GET', path, [['Authorization', `Bearer ${token}`], ['Accept', 'text/event-stream']]);
      const fields = { error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT };
      // Nest sends the SSE head a moment after the handler is called: the grant's answer usually comes later.
      const events = res.text.split('\n\n').map((block) => block.trim()).filter((block) => block !== '').map((block) => {
        const lines = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()]));
        return { event: lines.event, data: JSON.parse(lines.data ?? 'null') as unknown };
      });
      expect(
        res.status === 503
          ? { status: res.status, body: res.json, retryAfter: res.headers['retry-after'] }
          : { status: res.status, type: res.headers['content-type'], events },
      ).toEqual(
        res.status === 503
          ? { status: 503, body: fields, retryAfter: expect.stringMatching(/^\d+$/) }
          : { status: 200, type: 'text/event-stream', events: [{ event: 'error', data: fields }] },
      );
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expectNoLeak(res.text, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: the 500 log gate is keyed by fixed reasons only: a zone cycling OAuth error codes cannot add gates (config codes gated, others are 502 per call)', async () => {
      const codes = ['invalid_client', 'invalid_client', 'invalid_scope', 'invalid_scope', 'x_custom_1', 'x_custom_2', 'Invalid_Client'];
      const before = api.logger.levels.error.length;
      const statuses: number[] = [];
      for (const code of codes) {
        zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: code, error_description: ZONE_TEXT }) };
        statuses.push((await send(api.url, 'GET', '/granted', [['Authorization', `Bearer ${zone.issueToken({ scope: 'profile' })}`]])).status);
      }
      expect(statuses).toEqual([500, 500, 500, 500, 502, 502, 502]);
      const lines = api.logger.levels.error.slice(before);
      // invalid_client and invalid_scope once each (the interval), the three others per call.
      expect(lines).toHaveLength(5);
      // The zone's code is named in the message (a bounded token of the OAuth charset), never used as a gate key.
      expect(lines.map((line) => /^Token exchange failed \(([^)]*)\)/.exec(line)?.[1])).toEqual([
        'exchange_failed, oauth invalid_client', 'exchange_failed, oauth invalid_scope', 'exchange_failed, oauth', 'exchange_failed, oauth', 'exchange_failed, oauth',
      ]);
      expectNoLeak(lines.join('\n'), [ZONE_TEXT, SECRET], api.logger.lines);
    });
  });

  describe('gRPC and TCP microservices', () => {
    let api: RunningApp;
    let grpcUrl: string;
    let tcp: Awaited<ReturnType<typeof listenHybrid>>['tcp'];
    beforeAll(async () => {
      const logger = { app: undefined as INestApplication | undefined };
      api = await startApp('express', { ...keycard(), rpcTokenExtractor: (context) => context.switchToRpc().getData<{ accessToken?: string }>()?.accessToken }, {
        controllers: [TrialRpcController],
        configure: (app) => {
          logger.app = app;
        },
      });
      // listenHybrid listens again: connect the microservices on the running app instead.
      grpcUrl = `127.0.0.1:${await freePort()}`;
      const tcpPort = await freePort();
      api.app.connectMicroservice({ transport: Transport.GRPC, options: { package: 'orders', protoPath: PROTO, url: grpcUrl } }, { inheritAppConfig: true });
      api.app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }, { inheritAppConfig: true });
      await api.app.startAllMicroservices();
      const { ClientProxyFactory } = await import('@nestjs/microservices');
      tcp = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
    });
    afterAll(async () => {
      await tcp?.close();
      await api?.close();
    });

    it('held: TCP: a failed grant (zone 503) → the RpcException error { error, error_description } with the fixed text; nothing leaked', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const error = await lastValueFrom(tcp.send('orders.find', { id: 'o-1', accessToken: token })).then(
        (value) => ({ served: value }),
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT });
      expectNoLeak(error, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: gRPC: the zone answering 500 → 13 INTERNAL, fixed details, no challenge trailer', async () => {
      zone.faults.token = ZONE_500;
      const token = zone.issueToken({ scope: 'profile' });
      const { error } = await findOrder(grpcUrl, token);
      expect({ code: error?.code, details: error?.details, challenge: error?.metadata?.get('www-authenticate') }).toEqual({ code: GrpcStatus.INTERNAL, details: BAD_GATEWAY_TEXT, challenge: [] });
      expectNoLeak({ message: error?.message, details: error?.details }, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: gRPC server stream (Tail): a failed grant (zone 503) → 14 UNAVAILABLE, fixed details, retry-after trailer, no message', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const { error, replies } = await tailOnce(grpcUrl, token);
      expect(replies).toEqual([]);
      expect({ code: error?.code, details: error?.details, retryAfter: error?.metadata?.get('retry-after')[0] }).toEqual({ code: GrpcStatus.UNAVAILABLE, details: UNAVAILABLE_TEXT, retryAfter: '300' });
      expectNoLeak({ message: error?.message }, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('gRPC: an app\'s TokenExchangeError subclass with retryAfterSeconds 2.5 → a whole-second retry-after trailer, rounded up', async () => {
      const error = await placeOrder(grpcUrl, zone.issueToken({ scope: 'profile' }));
      expect(error?.code).toBe(GrpcStatus.UNAVAILABLE);
      expect(error?.details).toBe(UNAVAILABLE_TEXT);
      expect(String(error?.metadata?.get('retry-after')[0])).toMatch(/^\d+$/);
    });
  });

  describe('mcp-nest tools', () => {
    type McpApp = Awaited<ReturnType<typeof startMcpApp>>;
    const apps: McpApp[] = [];
    const start = async (tools: NonNullable<Parameters<typeof startMcpApp>[0]['tools']> = [TrialTools]) => {
      const port = await freePort();
      const app = await startMcpApp({ adapter: 'express', zoneUrl: '', port, keycard: { zoneUrl: zone.issuer, clientCredentials: { clientId: 'svc', clientSecret: SECRET } }, tools });
      apps.push(app);
      return { app, resource: `http://127.0.0.1:${port}/mcp` };
    };
    afterEach(async () => {
      for (const app of apps.splice(0)) await app.close();
    });

    it('held: the zone overloaded (503) → the tool\'s isError text "temporarily_unavailable: …", one log line; nothing leaked', async () => {
      const { app, resource } = await start();
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ aud: resource, scope: 'mcp:tools' });
      const before = app.logger.levels.error.length;
      const result = await callToolWithToken(`${app.url}/mcp`, token, 'upstream');
      expect(result).toMatchObject({ isError: true, content: [{ type: 'text', text: `temporarily_unavailable: ${UNAVAILABLE_TEXT}` }] });
      expect(app.logger.levels.error.slice(before)).toHaveLength(1);
      expectNoLeak(result, [token, ZONE_TEXT, SECRET], app.logger.lines);
    });

    it('two apps of one process sharing a tool class → a failure on app B answered and logged by app B (as for gateways)', async () => {
      const a = await start([SharedTools]);
      const b = await start([SharedTools]);
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ aud: b.resource, scope: 'mcp:tools' });
      const [beforeA, beforeB] = [a.app.logger.levels.error.length, b.app.logger.levels.error.length];
      const result = await callToolWithToken(`${b.app.url}/mcp`, token, 'shared_upstream');
      expect(result).toMatchObject({ isError: true, content: [{ type: 'text', text: `temporarily_unavailable: ${UNAVAILABLE_TEXT}` }] });
      expect(a.app.logger.levels.error.slice(beforeA)).toEqual([]);
      expect(b.app.logger.levels.error.slice(beforeB)).toHaveLength(1);
    });
  });
});

describe('trial: the workload token file (WorkloadIdentity { tokenFile })', () => {
  const WI_TOKEN = 'wi-token-contents-3b9f';
  let zone: TestZone;
  let dir: string;
  let tokenFile: string;
  let api: RunningApp;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'trial-doors-'));
    tokenFile = join(dir, 'token');
    zone = await TestZone.start({ audience: R, clients: [{ clientId: 'wi', acceptAssertion: (assertion) => assertion === WI_TOKEN }], resources: { [UP]: ['up:read'] } });
    api = await startApp('express', {
      zoneUrl: zone.issuer,
      resource: R,
      clientCredentials: new WorkloadIdentity({ tokenFile, clientId: 'wi' }),
      opaqueTokens: 'introspect',
    }, {
      controllers: [TrialController],
      providers: [SharedGateway],
      configure: (app: INestApplication) => app.useWebSocketAdapter(app.get(KeycardConnections).guard(new WsAdapter(app))),
    });
  });
  afterEach(() => {
    zone.reset();
    rmSync(tokenFile, { force: true, recursive: true });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
    rmSync(dir, { force: true, recursive: true });
  });
  const granted = () => send(api.url, 'GET', '/granted', [['Authorization', `Bearer ${zone.issueToken({ scope: 'profile' })}`]]);

  it('held: the file appears → the exchange succeeds with its contents as the assertion', async () => {
    writeFileSync(tokenFile, `${WI_TOKEN}\n`);
    const res = await granted();
    expect({ status: res.status, body: res.json }).toEqual({ status: 200, body: { scope: 'up:read' } });
  });

  it('held: missing → 503 temporarily_unavailable, Retry-After 5, the zone not asked', async () => {
    const res = await granted();
    expect({ status: res.status, retryAfter: res.headers['retry-after'], error: (res.json as { error?: string }).error }).toEqual({ status: 503, retryAfter: '5', error: 'temporarily_unavailable' });
    expect(zone.counts.token).toBe(0);
  });

  it('missing, 20 calls → one error line per interval (a configuration fault every caller meets, as the gated 500s), naming the file', async () => {
    api.clock.offsetMs += 61_000; // past the interval of the line the test above wrote
    const before = api.logger.levels.error.length;
    for (let i = 0; i < 20; i++) expect((await granted()).status).toBe(503);
    expect(api.logger.levels.error.slice(before)).toEqual([expect.stringContaining(`workload token file ${tokenFile}`)]);
  });

  it.each([
    ['a symlink to /dev/zero', () => symlinkSync('/dev/zero', tokenFile)],
    ['a directory', () => mkdirSync(tokenFile)],
    ['a FIFO nobody writes', () => execFileSync('mkfifo', [tokenFile])],
  ])('held: %s → 500 misconfigured at once (no read, no wait), the zone not asked', async (_name, make) => {
    make();
    const res = await granted();
    expect({ status: res.status, body: res.json }).toEqual({ status: 500, body: { error: 'server_error', error_description: MISCONFIGURED_TEXT } });
    expect(zone.counts.token).toBe(0);
  });

  it('held: a directory, 5 calls → 500 each, one error line (a plain config error takes the once-per-interval gate)', async () => {
    mkdirSync(tokenFile);
    const before = api.logger.levels.error.length;
    for (let i = 0; i < 5; i++) expect((await granted()).status).toBe(500);
    expect(api.logger.levels.error.slice(before).length).toBeLessThanOrEqual(1);
  });

  it('held: larger than 64 KiB → 503; neither the answer nor the log carries the contents', async () => {
    const marker = 'file-secret-6e1d';
    writeFileSync(tokenFile, `${marker}${'a'.repeat(70 * 1024)}`);
    const res = await granted();
    expect(res.status).toBe(503);
    expectNoLeak(res.text, [marker], api.logger.lines);
    expect(zone.counts.token).toBe(0);
  });

  it('held: a ws message with the file missing → the exception event temporarily_unavailable "The service is temporarily unavailable, retry later"', async () => {
    const answer = await askOverWs(Number(new URL(api.url).port), zone.issueToken({ scope: 'profile' }), 'upstream');
    expect(answer).toEqual({ event: 'exception', data: { status: 'error', error: 'temporarily_unavailable', error_description: 'The service is temporarily unavailable, retry later' } });
    expect(JSON.stringify(answer)).not.toContain(dir);
    expect(zone.counts.token).toBe(0);
  });

  it('held: introspection (@RequireFreshness) with the file missing → 503 with Retry-After, the zone not asked', async () => {
    const res = await send(api.url, 'GET', '/fresh', [['Authorization', `Bearer ${zone.issueToken({ scope: 'profile' })}`]]);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toMatch(/^\d+$/);
    expect(zone.counts.introspection ?? 0).toBe(0);
  });
});

type PlaceUnary = (request: object, metadata: import('@grpc/grpc-js').Metadata, options: { deadline: number }, callback: (error: ServiceError | null) => void) => void;

/** One server-streaming `Orders.Tail` with `token`: the replies and the error, if any. */
async function tailOnce(url: string, token: string): Promise<{ error?: ServiceError; replies: unknown[] }> {
  const grpc = await import('@grpc/grpc-js');
  const { loadSync } = await import('@grpc/proto-loader');
  const Orders = (grpc.loadPackageDefinition(loadSync(PROTO)).orders as { Orders: import('@grpc/grpc-js').ServiceClientConstructor }).Orders;
  const client = new Orders(url, grpc.credentials.createInsecure()) as unknown as import('@grpc/grpc-js').Client & {
    Tail: (request: object, metadata: import('@grpc/grpc-js').Metadata, options: { deadline: number }) => import('@grpc/grpc-js').ClientReadableStream<unknown>;
  };
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  try {
    return await new Promise((resolve) => {
      const replies: unknown[] = [];
      const stream = client.Tail({ id: 't-1' }, metadata, { deadline: Date.now() + 5000 });
      stream.on('data', (reply) => replies.push(reply));
      stream.on('error', (error: ServiceError) => resolve({ error, replies }));
      stream.on('end', () => resolve({ replies }));
    });
  } finally {
    client.close();
  }
}

/** One unary `Orders.Place` with `token`: its error (null when served). */
async function placeOrder(url: string, token: string): Promise<ServiceError | null> {
  const grpc = await import('@grpc/grpc-js');
  const { loadSync } = await import('@grpc/proto-loader');
  const Orders = (grpc.loadPackageDefinition(loadSync(PROTO)).orders as { Orders: import('@grpc/grpc-js').ServiceClientConstructor }).Orders;
  const client = new Orders(url, grpc.credentials.createInsecure()) as unknown as import('@grpc/grpc-js').Client & { Place: PlaceUnary };
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  try {
    return await new Promise((resolve) => client.Place({ id: 'o-1' }, metadata, { deadline: Date.now() + 5000 }, (error) => resolve(error)));
  } finally {
    client.close();
  }
}

/** What a subscriber receives first: graphql-ws's result or error (Apollo), the raw socket's first message (Mercurius). */
async function subscribeOnce(server: string, wsUrl: string, token: string, query: string): Promise<unknown> {
  if (server === 'mercurius') return mercuriusFirst(wsUrl, token, query);
  return firstGraphQLWsResult(wsUrl, { authorization: `Bearer ${token}` }, query).catch((error: unknown) =>
    error instanceof Error ? { message: error.message } : error);
}

/** The first message after `connection_ack` of a graphql-transport-ws subscription over a raw socket (Mercurius). */
async function mercuriusFirst(url: string, token: string, query: string): Promise<unknown> {
  const socket = await acknowledgedGraphQLWs(url, token);
  try {
    return await new Promise((resolve, reject) => {
      socket.on('message', (raw) => resolve(JSON.parse(String(raw))));
      socket.once('close', (code, reason) => reject(new Error(`closed ${code} ${String(reason)}`)));
      socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
    });
  } finally {
    socket.terminate();
  }
}
