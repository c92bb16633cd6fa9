/**
 * Two Nest apps of one process serving the same streaming handlers (`@Sse()` routes, a
 * server-streaming `@GrpcMethod`), both CREATED before either listens (tests, one app per port).
 * Each app's streams must end at the expiry its own options say (gRPC: not yet, see the `it.failing`) (here: app A with
 * `clockToleranceSeconds: 0`, app B with 30 s), a failed exchange in its stream must be answered
 * and logged by its own filter, and closing app A must leave app B's streams as they were.
 * The same for a GraphQL subscription over graphql-ws (Apollo): its failed exchange is answered and
 * logged by the app whose server accepted the socket. Real apps over loopback, the real TestZone, a
 * real event-stream client, a grpc-js client and the graphql-ws client.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, Sse, type INestApplication, type MessageEvent } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule, Query, Resolver, Subscription } from '@nestjs/graphql';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { ExpressAdapter } from '@nestjs/platform-express';
import { GrpcMethod, Payload, type ClientProxy } from '@nestjs/microservices';
import { interval, map, take, type Observable } from 'rxjs';
import { fileURLToPath } from 'node:url';
import { Access, type AccessContext, Grant, KeycardConnections, KeycardModule, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { readEventStream } from './support/event-stream.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { listenHybrid } from './support/rpc-app.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
const UP = 'https://upstream.example.com';
const SECRET = 'streams-two-apps-client-secret-7d21';
/** What the zone writes in its own error answers: no client and no log line may carry it. */
const ZONE_TEXT = 'zone-private-streams-two-apps-4b8e';
const ZONE_503 = { kind: 'status', status: 503, headers: { 'retry-after': '600' }, body: JSON.stringify({ error: 'temporarily_unavailable', error_description: ZONE_TEXT }) } as const;
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'The authorization server is unavailable, retry later' };
const EXPIRED = { error: 'invalid_token', error_description: 'The access token expired' };

@Controller('events')
class SharedEventsController {
  /** One event every 200 ms, 15 in all (3 s, past a token expiring within 2 s). */
  @RequireScopes('orders:read')
  @Sse('ticks')
  ticks(): Observable<MessageEvent> {
    return interval(200).pipe(take(15), map((n) => ({ data: { n } })));
  }

  /** One event, then the grant's failure (the zone answers 503). */
  @Grant(UP, 'up:read')
  @Sse('granted')
  granted(@Access() access: AccessContext): Observable<MessageEvent> {
    return interval(5).pipe(take(2), map((n) => ({ data: n === 0 ? { n } : { scope: access.access(UP).scope } })));
  }
}

@Controller()
class SharedOrdersController {
  /** Server streaming: one order every 200 ms, 15 in all (3 s). */
  @RequireScopes('orders:read')
  @GrpcMethod('Orders', 'Tail')
  tail(@Payload() request: { id: string }): Observable<{ id: string; by: string }> {
    return interval(200).pipe(take(15), map((i) => ({ id: `${request.id}-${i}`, by: 'tail' })));
  }
}

@Resolver()
class SharedSubscriptions {
  /** One event, then the grant's failure (the zone answers 503) out of the generator's body. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  async *granted(@Access() access: AccessContext): AsyncGenerator<{ granted: string }> {
    yield { granted: 'first' };
    yield { granted: access.access(UP).scope };
  }

  @Query(() => String)
  ok(): string {
    return 'ok';
  }
}

/** One subscription over graphql-ws until it ends: its events, then its errors, if any. */
async function subscribe(wsUrl: string, token: string, query: string): Promise<{ events: unknown[]; errors?: unknown }> {
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true });
  try {
    return await new Promise((resolve) => {
      const events: unknown[] = [];
      client.subscribe({ query }, { next: (value) => events.push(value), error: (errors: unknown) => resolve({ events, errors }), complete: () => resolve({ events }) });
    });
  } finally {
    await client.dispose();
  }
}

interface TwoApps {
  app: INestApplication;
  logger: CapturingLogger;
  url: string;
  grpcUrl: string;
  tcp: ClientProxy;
}

type OrdersClient = grpc.Client & { Tail(request: object, metadata: grpc.Metadata): grpc.ClientReadableStream<{ id: string }> };

function ordersClient(url: string): OrdersClient {
  const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
  return new orders(url, grpc.credentials.createInsecure()) as unknown as OrdersClient;
}

/** A `Tail` call's replies and status. */
function tail(url: string, token: string): Promise<{ replies: number; code: number; details: string; metadata: unknown }> {
  const client = ordersClient(url);
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    let replies = 0;
    const stream = client.Tail({ id: 'o' }, metadata);
    stream.on('data', () => replies++);
    stream.on('error', () => undefined); // the status says it all
    stream.on('status', (status: grpc.StatusObject) => {
      client.close();
      resolve({ replies, code: status.code, details: status.details, metadata: status.metadata.getMap() });
    });
  });
}

/** A token expiring within 2 s (the next whole second after the next). */
function shortToken(zone: TestZone): string {
  return zone.issueToken({ client_id: 'agent-two-apps', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 2 });
}

const parsed = (answer: Awaited<ReturnType<typeof readEventStream>>) => answer.events.map((e) => [e.event ?? 'message', JSON.parse(e.data) as unknown]);

describe('two apps of one process, both created before either listens, serving the same streaming handlers', () => {
  let zone: TestZone;
  let a: TwoApps;
  let b: TwoApps;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
    const created: { app: INestApplication; logger: CapturingLogger }[] = [];
    for (const clockToleranceSeconds of [0, 30]) {
      const logger = new CapturingLogger();
      @Module({
        imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, clockToleranceSeconds, clientCredentials: { clientId: 'svc', clientSecret: SECRET }, logger })],
        controllers: [SharedEventsController, SharedOrdersController],
      })
      class TwoAppsModule {}
      created.push({ app: await NestFactory.create(TwoAppsModule, new ExpressAdapter(), { logger: false, abortOnError: false }), logger });
    }
    const started: TwoApps[] = [];
    for (const { app, logger } of created) {
      const { grpcUrl, tcp } = await listenHybrid(app, PROTO);
      started.push({ app, logger, grpcUrl, tcp, url: `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}` });
    }
    [a, b] = started as [TwoApps, TwoApps];
  });
  beforeEach(() => zone.reset());
  afterAll(async () => {
    for (const app of [a, b]) {
      await app?.tcp.close();
      await app?.app.close().catch(() => undefined);
    }
    await zone?.stop();
  });

  const events = (app: TwoApps, path: string, token: string) => readEventStream(`${app.url}/events/${path}`, { Authorization: `Bearer ${token}` });

  it('SSE on app A (tolerance 0, created first) → ends at its token\'s expiry with `event: error` invalid_token, not at app B\'s (30 s later)', async () => {
    const token = shortToken(zone);
    const answer = await events(a, 'ticks', token);
    expect(answer.status).toBe(200);
    const received = parsed(answer);
    expect({ ended: received.at(-1), fewer: received.filter(([event]) => event === 'message').length < 15 }).toEqual({ ended: ['error', EXPIRED], fewer: true });
    expectNoLeak(answer, [token], [...a.logger.lines, ...b.logger.lines]);
  });

  it('SSE on app B (tolerance 30 s) with the same kind of token → every event, no error (its own tolerance)', async () => {
    const token = shortToken(zone);
    const answer = await events(b, 'ticks', token);
    expect(answer.status).toBe(200);
    expect(parsed(answer)).toEqual(Array.from({ length: 15 }, (_, n) => ['message', { n }]));
    expectNoLeak(answer, [token], [...a.logger.lines, ...b.logger.lines]);
  });

  it('SSE on app A failing its grant (zone 503) → `event: error` temporarily_unavailable, answered and logged by app A\'s filter (one line in A\'s log, none in B\'s)', async () => {
    zone.faults.token = ZONE_503;
    const token = zone.issueToken({ scope: 'orders:read' });
    const [beforeA, beforeB] = [a.logger.levels.error.length, b.logger.levels.error.length];
    const answer = await events(a, 'granted', token);
    expect(answer.status).toBe(200);
    expect(parsed(answer)).toEqual([['message', { n: 0 }], ['error', UNAVAILABLE]]);
    expect({ a: a.logger.levels.error.length - beforeA, b: b.logger.levels.error.length - beforeB }).toEqual({ a: 1, b: 0 });
    expectNoLeak(answer, [token, ZONE_TEXT, SECRET], [...a.logger.lines, ...b.logger.lines]);
  });

  // Not fixed yet (docs/resource-server.md, "Several Nest apps in one process"): a gRPC handler still
  // gets the last created app's interceptor, as no server Nest exposes tells a gRPC call's app.
  // `it.failing`: this turns red once app A's gRPC streams end by A's own clock; make it `it` then.
  it.failing('gRPC server stream on app A (tolerance 0) → ends at its token\'s expiry with status 16 "The access token expired" (KNOWN LIMITATION: still app B\'s tolerance)', async () => {
    const token = shortToken(zone);
    const outcome = await tail(a.grpcUrl, token);
    expect({ code: outcome.code, details: outcome.details, fewer: outcome.replies < 15 }).toEqual({ code: grpc.status.UNAUTHENTICATED, details: EXPIRED.error_description, fewer: true });
    expectNoLeak(outcome, [token], [...a.logger.lines, ...b.logger.lines]);
  });

  it('gRPC server stream on app B (tolerance 30 s) → every reply, status 0', async () => {
    const token = shortToken(zone);
    const outcome = await tail(b.grpcUrl, token);
    expect({ code: outcome.code, replies: outcome.replies }).toEqual({ code: grpc.status.OK, replies: 15 });
    expectNoLeak(outcome, [token], [...a.logger.lines, ...b.logger.lines]);
  });

  it('an SSE request reaching app A\'s handlers through a server of its own (not the one Nest listens on), both apps alive → 500 server_error, one line in each app\'s log saying how to serve it; no stream, no token leaked', async () => {
    const { createServer } = await import('node:http');
    const own = createServer(a.app.getHttpAdapter().getInstance() as Parameters<typeof createServer>[1]);
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    try {
      const token = zone.issueToken({ scope: 'orders:read' });
      const response = await fetch(`http://127.0.0.1:${(own.address() as { port: number }).port}/events/ticks`, { headers: { Accept: 'text/event-stream', Authorization: `Bearer ${token}` } });
      const answer = { status: response.status, type: response.headers.get('content-type'), body: await response.text() };
      expect({ status: answer.status, json: answer.type?.startsWith('application/json'), body: JSON.parse(answer.body) as unknown })
        .toEqual({ status: 500, json: true, body: { error: 'server_error', error_description: expect.any(String) } });
      for (const app of [a, b]) expect(app.logger.levels.error.filter((line) => line.includes('SharedEventsController.ticks') && line.includes('app.listen()'))).toHaveLength(1);
      expectNoLeak(answer, [token], [...a.logger.lines, ...b.logger.lines]);
    } finally {
      await new Promise((resolve) => own.close(resolve));
    }
  });

  it('after app A closes: app B\'s SSE failure is still answered and logged by B, its SSE and gRPC streams keep its tolerance', async () => {
    await a.tcp.close();
    await a.app.close();
    zone.faults.token = ZONE_503;
    const token = zone.issueToken({ scope: 'orders:read' });
    const beforeB = b.logger.levels.error.length;
    const failed = await events(b, 'granted', token);
    expect(parsed(failed)).toEqual([['message', { n: 0 }], ['error', UNAVAILABLE]]);
    expect(b.logger.levels.error.length - beforeB).toBe(1);
    zone.reset();
    const short = shortToken(zone);
    const [sse, rpc] = await Promise.all([events(b, 'ticks', short), tail(b.grpcUrl, short)]);
    expect({ sse: parsed(sse).length, last: parsed(sse).at(-1), code: rpc.code, replies: rpc.replies }).toEqual({ sse: 15, last: ['message', { n: 14 }], code: grpc.status.OK, replies: 15 });
    expectNoLeak({ failed, sse, rpc }, [token, short, ZONE_TEXT, SECRET], b.logger.lines);
  });
});

describe('two Apollo apps of one process, both created before either listens, serving the same subscription resolver', () => {
  let zone: TestZone;
  const apps: { app: INestApplication; logger: CapturingLogger; wsUrl: string }[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
    const created: { app: INestApplication; logger: CapturingLogger }[] = [];
    for (let i = 0; i < 2; i++) {
      const logger = new CapturingLogger();
      @Module({
        imports: [
          KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'svc', clientSecret: SECRET }, logger }),
          GraphQLModule.forRootAsync<ApolloDriverConfig>({
            driver: ApolloDriver,
            inject: [KeycardConnections],
            useFactory: (keycard: KeycardConnections) => ({ graphiql: false, autoSchemaFile: true, subscriptions: { 'graphql-ws': keycard.graphqlWs() } }),
          }),
        ],
        providers: [SharedSubscriptions],
      })
      class TwoApolloAppsModule {}
      created.push({ app: await NestFactory.create(TwoApolloAppsModule, new ExpressAdapter(), { logger: false, abortOnError: false }), logger });
    }
    for (const { app, logger } of created) {
      await app.listen(0, '127.0.0.1');
      apps.push({ app, logger, wsUrl: `ws://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/graphql` });
    }
  });
  afterAll(async () => {
    for (const { app } of apps) await app.close().catch(() => undefined);
    await zone?.stop();
  });

  const REFUSED = [expect.objectContaining({
    message: UNAVAILABLE.error_description,
    extensions: expect.objectContaining({ code: 'SERVICE_UNAVAILABLE', ...UNAVAILABLE }),
  })];

  for (const [name, index] of [['A (created first)', 0], ['B', 1]] as const) {
    it(`a subscription on app ${name} failing its grant (zone 503) → its event, then SERVICE_UNAVAILABLE with the fixed text, logged by that app only`, async () => {
      zone.reset();
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = apps.map((a) => a.logger.levels.error.length);
      const run = await subscribe(apps[index]!.wsUrl, token, 'subscription { granted }');
      expect(run.events).toEqual([{ data: { granted: 'first' } }]);
      expect(run.errors).toEqual(REFUSED);
      expect(apps.map((a, n) => a.logger.levels.error.length - before[n]!)).toEqual(index === 0 ? [1, 0] : [0, 1]);
      expectNoLeak(run, [token, ZONE_TEXT, SECRET], apps.flatMap((a) => a.logger.lines));
    });
  }

  it('after app A closes: a subscription on app B failing its grant → the same refusal, logged by B', async () => {
    await apps[0]!.app.close();
    zone.reset();
    zone.faults.token = ZONE_503;
    const token = zone.issueToken({ scope: 'profile' });
    const before = apps[1]!.logger.levels.error.length;
    const run = await subscribe(apps[1]!.wsUrl, token, 'subscription { granted }');
    expect({ events: run.events, errors: run.errors }).toEqual({ events: [{ data: { granted: 'first' } }], errors: REFUSED });
    expect(apps[1]!.logger.levels.error.length - before).toBe(1);
    expectNoLeak(run, [token, ZONE_TEXT, SECRET], apps[1]!.logger.lines);
  });
});
