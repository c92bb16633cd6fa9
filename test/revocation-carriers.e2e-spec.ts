/**
 * Catalogue X28: a revocation taken on instance A ends the matching open carriers on instance B
 * (and A), through the one CarrierLifecycle, with the signal expiry uses (O9–O11): `ws` and
 * graphql-ws / Mercurius subscriptions closed 4401, socket.io `exception` + disconnect, gRPC
 * status 16, a final SSE `error` event. Carriers of another session keep receiving. Real clients
 * over loopback, real redis-server between the instances.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, Sse, type INestApplication, type MessageEvent } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, Payload, type ClientProxy } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway, WebSocketServer, ConnectedSocket } from '@nestjs/websockets';
import { Redis } from 'ioredis';
import { request as httpRequest } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { interval, map, type Observable } from 'rxjs';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { KeycardConnections, KeycardModule, KeycardRevocationModule, RequireScopes } from '../lib/index.js';
import { CarrierLifecycle } from '../lib/decision/carrier-lifecycle.js';
import { RedisRevocationFeed } from '../lib/redis/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { R } from './support/forge.js';
import { graphqlWsClient, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { CapturingLogger } from './support/keycard-app.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from './support/redis-server.js';
import { eventually, LMAX_SECONDS, startInstance, type RevocationInstance } from './support/revocation-app.js';
import { listenHybrid } from './support/rpc-app.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
const REVOKED = 'The access token has been revoked';
const describeRedis = redisUnavailableReason() === undefined ? describe : describe.skip;

@Controller()
class TailController {
  @RequireScopes('orders:read')
  @GrpcMethod('Orders', 'Tail')
  tail(@Payload() request: { id: string }): Observable<{ id: string; by: string }> {
    return interval(100).pipe(map((i) => ({ id: `${request.id}-${i}`, by: 'tail' })));
  }

  @RequireScopes('orders:read')
  @Sse('events')
  events(): Observable<MessageEvent> {
    return interval(100).pipe(map((n) => ({ data: { n } })));
  }
}

function pushingGateway() {
  @WebSocketGateway()
  class Pushes {
    @WebSocketServer() server!: { emit?(event: string, data: unknown): unknown; clients?: Set<WebSocket> };
    @SubscribeMessage('ping')
    @RequireScopes('orders:read')
    ping(@ConnectedSocket() _client: unknown) {
      return { event: 'pong', data: 1 };
    }
    push(n: number) {
      if (this.server.clients instanceof Set) for (const c of this.server.clients) c.send(JSON.stringify({ event: 'item', data: n }));
      else this.server.emit!('item', n);
    }
  }
  return Pushes;
}

interface CarrierApp {
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
  tcp?: ClientProxy;
  grpcUrl?: string;
  close(): Promise<void>;
}

function revocationModule(redis: Redis) {
  return KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: LMAX_SECONDS, feed: new RedisRevocationFeed({ redis }) });
}

/** Instance B with a gateway on `platform` (plus gRPC and @Sse() on the `ws` one), pushing one item every 100 ms. */
async function startCarrierApp(zone: TestZone, platform: 'ws' | 'socket.io', redis: Redis): Promise<CarrierApp> {
  const logger = new CapturingLogger();
  const Gateway = pushingGateway();
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger }), revocationModule(redis)],
    providers: [Gateway],
    controllers: platform === 'ws' ? [TailController] : [],
  })
  class CarrierModule {}
  const app = await NestFactory.create(CarrierModule, { logger: false, abortOnError: false });
  app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
  const hybrid = platform === 'ws' ? await listenHybrid(app, PROTO) : (await app.listen(0, '127.0.0.1'), undefined);
  const { port } = app.getHttpServer().address() as { port: number };
  const gateway = app.get(Gateway);
  let n = 0;
  const timer = setInterval(() => gateway.push(n++), 100);
  return {
    app, logger, url: `http://127.0.0.1:${port}`, grpcUrl: hybrid?.grpcUrl, tcp: hybrid?.tcp,
    close: async () => {
      clearInterval(timer);
      await hybrid?.tcp.close();
      await app.close();
    },
  };
}

/** What one open carrier received, and how it ended. */
interface Watched {
  items: number;
  ended?: unknown;
  stop(): void;
}

function watchWs(url: string, token: string): Watched {
  const socket = new WebSocket(url.replace('http', 'ws'), { headers: { authorization: `Bearer ${token}` } });
  const watched: Watched = { items: 0, stop: () => socket.close() };
  socket.on('message', () => (watched.items += 1));
  socket.on('close', (code, reason) => (watched.ended ??= { code, reason: reason.toString() }));
  return watched;
}

function watchSocketIo(url: string, token: string): Watched {
  const socket = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  const watched: Watched = { items: 0, stop: () => socket.disconnect() };
  let exception: unknown;
  socket.on('item', () => (watched.items += 1));
  socket.on('exception', (data: unknown) => (exception = data));
  socket.on('disconnect', (reason) => (watched.ended ??= { exception, reason }));
  return watched;
}

function watchGrpc(grpcUrl: string, token: string): Watched {
  const Orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
  const client = new Orders(grpcUrl, grpc.credentials.createInsecure()) as unknown as { Tail(r: object, m: grpc.Metadata): grpc.ClientReadableStream<unknown>; close(): void };
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  const stream = client.Tail({ id: 'o' }, metadata);
  const watched: Watched = { items: 0, stop: () => (stream.cancel(), client.close()) };
  stream.on('data', () => (watched.items += 1));
  stream.on('error', () => undefined);
  stream.on('status', (status: grpc.StatusObject) => {
    watched.ended ??= { code: status.code, details: status.details };
    client.close();
  });
  return watched;
}

function watchSse(url: string, token: string, path = '/events'): Watched {
  const watched: Watched = { items: 0, stop: () => req.destroy() };
  let last = '';
  const req = httpRequest(`${url}${path}`, { headers: { Accept: 'text/event-stream', Authorization: `Bearer ${token}` }, agent: false }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      watched.items += chunk.split('\n\n').length - 1;
      last += chunk;
    });
    res.on('end', () => {
      const blocks = last.trim().split('\n\n');
      watched.ended ??= blocks.at(-1);
    });
  });
  req.on('error', () => undefined);
  req.end();
  return watched;
}

function watchGraphQL(wsUrl: string, token: string): Watched {
  const watched: Watched = { items: 0, stop: () => void client.dispose() };
  const client = graphqlWsClient(wsUrl, { token }, (closed) => (watched.ended ??= closed));
  client.subscribe({ query: 'subscription { ticks }' }, { next: () => (watched.items += 1), error: () => undefined, complete: () => undefined });
  return watched;
}

/** Opens carriers for two sessions, revokes the first on A, and checks: the first ends with `signal`, the second keeps receiving. */
async function revokeOneOfTwo(a: RevocationInstance, zone: TestZone, open: (token: string) => Watched, label: string) {
  const revokedToken = zone.issueToken({ scope: 'orders:read', sid: `${label}-1` });
  const keptToken = zone.issueToken({ scope: 'orders:read', sid: `${label}-2` });
  const revoked = open(revokedToken);
  const kept = open(keptToken);
  try {
    await eventually(() => revoked.items > 0 && kept.items > 0);
    await a.revocations.revoke({ issuer: zone.issuer, sessionId: `${label}-1` });
    await eventually(() => revoked.ended !== undefined);
    const before = kept.items;
    await delay(400);
    expect({ keptEnded: kept.ended, keptReceiving: kept.items > before }).toEqual({ keptEnded: undefined, keptReceiving: true });
    return { ended: revoked.ended, secrets: [revokedToken, keptToken] };
  } finally {
    revoked.stop();
    kept.stop();
  }
}

describeRedis('X28 a revocation ends the matching open carriers on every instance', () => {
  let zone: TestZone;
  let redis: RunningRedis;
  const clients: Redis[] = [];
  let a: RevocationInstance;
  let wsApp: CarrierApp;
  let ioApp: CarrierApp;
  const graphql: Record<string, RunningGraphQLApp> = {};

  const client = () => {
    const made = new Redis(redis.url);
    clients.push(made);
    return made;
  };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    redis = await startRedis();
    a = await startInstance(zone, { redisUrl: redis.url });
    wsApp = await startCarrierApp(zone, 'ws', client());
    ioApp = await startCarrierApp(zone, 'socket.io', client());
    graphql.apollo = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, { imports: [revocationModule(client())], graphqlWs: [] });
    graphql.mercurius = await startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R }, { imports: [revocationModule(client())], mercuriusSubscription: [] });
  }, 60_000);
  afterAll(async () => {
    await Promise.all([a?.close(), wsApp?.close(), ioApp?.close(), graphql.apollo?.close(), graphql.mercurius?.close()]);
    for (const made of clients) made.disconnect();
    await redis?.close();
    await zone?.stop();
  });

  it('X28 ws gateway: the revoked session closed 4401 invalid_token on B, the other session keeps receiving', async () => {
    const { ended, secrets } = await revokeOneOfTwo(a, zone, (t) => watchWs(wsApp.url, t), 'ws');
    expect(ended).toEqual({ code: 4401, reason: 'invalid_token' });
    expectNoLeak(ended, secrets, wsApp.logger.lines);
  });

  it('X28 socket.io gateway: `exception` (invalid_token, "The access token has been revoked") then disconnect', async () => {
    const { ended, secrets } = await revokeOneOfTwo(a, zone, (t) => watchSocketIo(ioApp.url, t), 'io');
    expect(ended).toEqual({ exception: { status: 'error', error: 'invalid_token', error_description: REVOKED }, reason: 'io server disconnect' });
    expectNoLeak(ended, secrets, ioApp.logger.lines);
  });

  it('X28 gRPC server stream: status 16 UNAUTHENTICATED with "The access token has been revoked"', async () => {
    const { ended, secrets } = await revokeOneOfTwo(a, zone, (t) => watchGrpc(wsApp.grpcUrl!, t), 'grpc');
    expect(ended).toEqual({ code: grpc.status.UNAUTHENTICATED, details: REVOKED });
    expectNoLeak(ended, secrets, wsApp.logger.lines);
  });

  it('X28 Nest @Sse(): a final `error` event (invalid_token, "The access token has been revoked"), then the response ends', async () => {
    const { ended, secrets } = await revokeOneOfTwo(a, zone, (t) => watchSse(wsApp.url, t), 'sse');
    const fields = String(ended).split('\n').filter((line) => !line.startsWith('id: '));
    expect(fields).toEqual(['event: error', `data: ${JSON.stringify({ error: 'invalid_token', error_description: REVOKED })}`]);
    expectNoLeak(ended, secrets, wsApp.logger.lines);
  });

  it.each(['apollo', 'mercurius'])('X28 %s subscription (graphql-ws): closed 4401 invalid_token', async (server) => {
    const { ended, secrets } = await revokeOneOfTwo(a, zone, (t) => watchGraphQL(graphql[server]!.wsUrl, t), `gql-${server}`);
    expect(ended).toEqual({ code: 4401, reason: 'invalid_token' });
    expectNoLeak(ended, secrets, graphql[server]!.logger.lines);
  });

  it('X23 GraphQL over HTTP on Apollo and Mercurius: a revoked token → UNAUTHENTICATED invalid_token "The access token has been revoked", HTTP 401', async () => {
    const revoked = zone.issueToken({ scope: 'orders:read', sid: 'gql-http-1' });
    await a.revocations.revoke({ issuer: zone.issuer, sessionId: 'gql-http-1' });
    for (const server of ['apollo', 'mercurius']) {
      const app = graphql[server]!;
      await eventually(async () => (await postGraphQL(app.url, '{ orders { id } }', revoked)).status === 401);
      const res = await postGraphQL(app.url, '{ orders { id } }', revoked);
      expect({ status: res.status, error: res.challenge?.params.error, description: res.challenge?.params.error_description }).toEqual({ status: 401, error: 'invalid_token', description: REVOKED });
      expect(res.body.errors?.[0]).toMatchObject({ message: REVOKED, extensions: { code: 'UNAUTHENTICATED', error: 'invalid_token' } });
      expectNoLeak(res.body, [revoked], app.logger.lines);
    }
  });

  it('X28 carriers on A itself end at once; nothing stays bound once they are closed', async () => {
    await eventually(() => [wsApp, ioApp].every((app) => app.app.get(CarrierLifecycle).size === 0));
    const { ended } = await revokeOneOfTwo(a, zone, (t) => watchSse(a.url, t, '/feed'), 'local');
    expect(String(ended)).toContain(REVOKED);
  });
});
