/**
 * Streams end when their token expires (catalogue O10, O11 for Nest `@Sse()`; decision Q20): gRPC
 * server streams, `@GrpcStreamMethod` and `@GrpcStreamCall` duplex calls, and Nest server-sent
 * event routes, each bound at open to the agent the guard admitted and ended at `exp` + tolerance
 * in the door's own shape. Real `@grpc/grpc-js` clients and a real HTTP event-stream client over
 * loopback, against a hybrid app with `clockToleranceSeconds: 0`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, Sse, type INestApplication, type MessageEvent } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, GrpcStreamCall, GrpcStreamMethod, Payload, type ClientProxy } from '@nestjs/microservices';
import { interval, map, take, type Observable } from 'rxjs';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { KeycardModule, RequireScopes } from '../lib/index.js';
import { CarrierLifecycle } from '../lib/decision/carrier-lifecycle.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { readEventStream } from './support/event-stream.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { listenHybrid } from './support/rpc-app.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
/** A late item arrives more than this long after `exp` (catalogue §0, "Short token Ts"). */
const LATE_MS = 500;
const EXPIRED = 'The access token expired';

interface Order {
  id: string;
  by: string;
}

@Controller()
class StreamsRpcController {
  /** Server streaming: one order every 250 ms, 20 in all (5 s, well past a 2 s token). */
  @RequireScopes('orders:read')
  @GrpcMethod('Orders', 'Tail')
  tail(@Payload() request: { id: string }): Observable<Order> {
    return interval(250).pipe(take(20), map((i) => ({ id: `${request.id}-${i}`, by: 'tail' })));
  }

  /** Duplex, Observable in and out: one reply per message. */
  @RequireScopes('orders:read')
  @GrpcStreamMethod('Orders', 'Follow')
  follow(requests: Observable<{ id: string }>): Observable<Order> {
    return requests.pipe(map((request) => ({ id: request.id, by: 'follow' })));
  }

  /** Duplex on the raw call: the handler writes on it itself. */
  @RequireScopes('orders:read')
  @GrpcStreamCall('Orders', 'Watch')
  watch(call: grpc.ServerDuplexStream<{ id: string }, Order>) {
    call.on('data', (request: { id: string }) => call.write({ id: request.id, by: 'watch' }));
    call.on('end', () => call.end());
  }
}

@Controller('events')
class EventsController {
  /** One event every 200 ms, 25 in all (5 s). */
  @RequireScopes('orders:read')
  @Sse('orders')
  orders(): Observable<MessageEvent> {
    return interval(200).pipe(take(25), map((n) => ({ data: { n } })));
  }
}

interface StreamsApp {
  app: INestApplication;
  grpcUrl: string;
  baseUrl: string;
  tcp: ClientProxy;
  logger: CapturingLogger;
}

async function startStreamsApp(zone: TestZone): Promise<StreamsApp> {
  const logger = new CapturingLogger();
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, logger })],
    controllers: [StreamsRpcController, EventsController],
  })
  class StreamsAppModule {}
  const app = await NestFactory.create(StreamsAppModule, { logger: false, abortOnError: false });
  const { grpcUrl, tcp } = await listenHybrid(app, PROTO);
  return { app, grpcUrl, tcp, logger, baseUrl: await app.getUrl() };
}

type OrdersClient = grpc.Client & {
  Tail(request: object, metadata: grpc.Metadata): grpc.ClientReadableStream<Order>;
  Follow(metadata: grpc.Metadata): grpc.ClientDuplexStream<object, Order>;
  Watch(metadata: grpc.Metadata): grpc.ClientDuplexStream<object, Order>;
};

function ordersClient(url: string): OrdersClient {
  const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
  return new orders(url, grpc.credentials.createInsecure()) as unknown as OrdersClient;
}

function bearer(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  return metadata;
}

/** What a client stream received: each reply with its arrival time, and how the call ended. */
interface StreamOutcome {
  replies: { reply: Order; at: number }[];
  status: { code: number; details: string; metadata: unknown };
  endedAt: number;
}

/**
 * Reads `stream` until its status. A duplex stream gets one message every 250 ms (20 in all,
 * then half-close), stopped as soon as the server ends the call.
 */
function outcomeOf(stream: grpc.ClientReadableStream<Order> | grpc.ClientDuplexStream<object, Order>, send = false): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const replies: StreamOutcome['replies'] = [];
    let sent = 0;
    const sender = send
      ? setInterval(() => {
        const duplex = stream as grpc.ClientDuplexStream<object, Order>;
        if (sent === 20) {
          clearInterval(sender);
          duplex.end();
        } else {
          duplex.write({ id: `m-${sent++}` });
        }
      }, 250)
      : undefined;
    stream.on('data', (reply: Order) => replies.push({ reply, at: Date.now() }));
    stream.on('error', () => undefined); // the status below says it all
    stream.on('status', (status: grpc.StatusObject) => {
      clearInterval(sender);
      resolve({ replies, status: { code: status.code, details: status.details, metadata: status.metadata.getMap() }, endedAt: Date.now() });
    });
  });
}

/** `Ts` (catalogue §0): `T0` expiring 2 s from now, and its expiry in ms since the epoch. */
function shortToken(zone: TestZone): { token: string; expMs: number } {
  const exp = Math.floor(Date.now() / 1000) + 2;
  return { token: zone.issueToken({ client_id: 'agent-stream', scope: 'orders:read', exp }), expMs: exp * 1000 };
}

/** Resolves once `done()` holds, looking every 10 ms (closes travel through sockets). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('streams end when their token expires (gRPC streams, Nest @Sse())', () => {
  let zone: TestZone;
  let api: StreamsApp;
  let client: OrdersClient;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startStreamsApp(zone);
    client = ordersClient(api.grpcUrl);
  });
  afterAll(async () => {
    client?.close();
    await api?.tcp.close();
    await api?.app.close();
    await zone?.stop();
  });

  /** Served until `exp`, nothing late, then status 16 with the fixed description; no binding left behind. */
  function expectEndedAtExpiry(outcome: StreamOutcome, expMs: number, token: string) {
    const late = outcome.replies.filter((r) => r.at > expMs + LATE_MS);
    expect({ served: outcome.replies.length > 0, late: late.length }).toEqual({ served: true, late: 0 });
    expect({ code: outcome.status.code, details: outcome.status.details }).toEqual({ code: grpc.status.UNAUTHENTICATED, details: EXPIRED });
    expect(outcome.endedAt).toBeGreaterThanOrEqual(expMs - 20); // at expiry, not before
    expectNoLeak(outcome.status, [token], api.logger.lines);
    expect(api.app.get(CarrierLifecycle).size).toBe(0);
  }

  it('O10 server-streaming @GrpcMethod, one reply every 250 ms with Ts → 0 late replies, then status 16 "The access token expired"', async () => {
    const { token, expMs } = shortToken(zone);
    const outcome = await outcomeOf(client.Tail({ id: 'o-1' }, bearer(token)));
    expectEndedAtExpiry(outcome, expMs, token);
  });

  it('O10 @GrpcStreamMethod duplex, the client sends every 250 ms (20 messages) with Ts → 0 late replies, then status 16', async () => {
    const { token, expMs } = shortToken(zone);
    const outcome = await outcomeOf(client.Follow(bearer(token)), true);
    expectEndedAtExpiry(outcome, expMs, token);
  });

  it('O10 @GrpcStreamCall duplex (the handler writes on the raw call) with Ts → 0 late replies, then status 16', async () => {
    const { token, expMs } = shortToken(zone);
    const outcome = await outcomeOf(client.Watch(bearer(token)), true);
    expectEndedAtExpiry(outcome, expMs, token);
  });

  it('O10 streams that finish before their token expires end as usual (status 0), leaving no binding behind', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    for (const method of ['Follow', 'Watch'] as const) {
      const stream = client[method](bearer(token));
      const outcome = outcomeOf(stream);
      stream.write({ id: 'x-1' });
      stream.end();
      const { replies, status } = await outcome;
      expect({ replies: replies.map((r) => r.reply), code: status.code }).toEqual({ replies: [{ id: 'x-1', by: method.toLowerCase() }], code: grpc.status.OK });
    }
    expect(api.app.get(CarrierLifecycle).size).toBe(0);
  });

  it('O10 O11 each app binds its own streams (two apps alive with the same controllers); a client that leaves releases the binding', async () => {
    const second = await startStreamsApp(zone);
    const secondClient = ordersClient(second.grpcUrl);
    const sizes = () => [api, second].map((a) => a.app.get(CarrierLifecycle).size);
    try {
      const token = zone.issueToken({ scope: 'orders:read' });
      // An event stream on the first app, left by its client after the first event.
      const whileEventsFlow = await new Promise<number[]>((left, failed) => {
        const req = httpRequest(`${api.baseUrl}/events/orders`, { headers: { Authorization: `Bearer ${token}` }, agent: false }, (res) => {
          res.once('data', () => {
            left(sizes());
            req.destroy();
          });
        });
        req.on('error', failed);
        req.end();
      });
      // A server stream on the second app, cancelled by its client after the first reply.
      const whileRepliesFlow = await new Promise<number[]>((replied) => {
        const stream = secondClient.Tail({ id: 'o-2' }, bearer(token));
        stream.on('error', () => undefined); // CANCELLED, the client's own doing
        stream.once('data', () => {
          replied(sizes());
          stream.cancel();
        });
      });
      expect({ whileEventsFlow, whileRepliesFlow }).toEqual({ whileEventsFlow: [1, 0], whileRepliesFlow: [0, 1] });
      await until(() => sizes().every((size) => size === 0));
    } finally {
      secondClient.close();
      await second.tcp.close();
      await second.app.close();
    }
  });

  it('O11 Nest @Sse() route, one event every 200 ms with Ts → 0 late events, then one `error` event (invalid_token, fixed description) and the response ends', async () => {
    const { token, expMs } = shortToken(zone);
    const answer = await readEventStream(`${api.baseUrl}/events/orders`, { Authorization: `Bearer ${token}` });
    expect({ status: answer.status, contentType: answer.contentType }).toEqual({ status: 200, contentType: expect.stringMatching(/^text\/event-stream/) });
    const last = answer.events.at(-1)!;
    const ticks = answer.events.slice(0, -1);
    expect({ event: last.event, data: JSON.parse(last.data) as unknown }).toEqual({
      event: 'error',
      data: { error: 'invalid_token', error_description: EXPIRED },
    });
    expect({ served: ticks.length > 0, others: ticks.filter((e) => e.event !== undefined).length, late: answer.events.filter((e) => e.at > expMs + LATE_MS).length })
      .toEqual({ served: true, others: 0, late: 0 });
    expect(last.at).toBeGreaterThanOrEqual(expMs - 20); // at expiry, not before
    expect(answer.endedAt - last.at).toBeLessThan(LATE_MS);
    expectNoLeak(answer.events, [token], api.logger.lines);
    expect(api.app.get(CarrierLifecycle).size).toBe(0);
  });
});
