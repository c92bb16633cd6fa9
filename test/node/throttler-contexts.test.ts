/**
 * Per-agent rate limiting outside plain HTTP (catalogue N9): GraphQL (Apollo on Express) and a
 * socket.io gateway. Node's test runner, for the reason given in throttler.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, type INestApplication, Module, type ModuleMetadata, type Provider } from '@nestjs/common';
import { GrpcMethod, MessagePattern } from '@nestjs/microservices';
import { resolve } from 'node:path';
import { lastValueFrom } from 'rxjs';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { ThrottlerModule } from '@nestjs/throttler';
import { Directive, Field, GraphQLModule, ID, ObjectType, Parent, Query, ResolveField, ResolveReference, Resolver } from '@nestjs/graphql';
import { ApolloFederationDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { ExpressAdapter } from '@nestjs/platform-express';
import { io, type Socket } from 'socket.io-client';
import { Agent, KeycardConnections, KeycardModule, Public } from '../../lib/index.js';
import { listenHybrid } from '../support/rpc-app.js';
import { TestZone } from '../../lib/testing/index.js';
import { KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { startGraphQLApp, type RunningGraphQLApp } from '../support/graphql-app.js';
import { CapturingLogger } from '../support/keycard-app.js';

const R = 'https://api.example.com';
const LIMIT = 3;
const throttling = {
  imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: LIMIT }])],
  providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
};

/** Provides the throttler guard from a module imported after KeycardModule: Nest then runs the Keycard guard first. */
@Module({ providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }] })
class ThrottlerAfterKeycardModule {}

const auditLines = (logger: CapturingLogger) =>
  logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

/** A token forged from a real one (its signature replaced): refused, no agent. */
function forged(zone: TestZone): string {
  const [header, payload] = zone.issueToken({ scope: 'orders:read' }).split('.');
  return `${header}.${payload}.${Buffer.alloc(256, 7).toString('base64url')}`;
}

void describe('KeycardThrottlerGuard in GraphQL (Apollo)', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, throttling);
  });
  after(async () => {
    await api?.close();
    await zone?.stop();
  });

  const query = async (token: string | undefined, q = '{ orders { by } }') => {
    const res = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query: q }),
    });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
  };

  void it('N9 no crash; a noisy agent gets TOO_MANY_REQUESTS, other agents are served (per-agent counting)', async () => {
    const noisy = zone.issueToken({ client_id: 'agent-b', scope: 'orders:read' });
    const answers = [];
    for (let i = 0; i < LIMIT + 2; i++) answers.push(await query(noisy));
    const codes = answers.map((a) => (JSON.parse(a.text) as { errors?: { extensions: { code: string } }[] }).errors?.[0]?.extensions.code ?? 'data');
    assert.deepEqual(codes, ['data', 'data', 'data', 'TOO_MANY_REQUESTS', 'TOO_MANY_REQUESTS']);
    assert.equal(answers[3].status, 429, 'nothing of the operation ran');
    assert.ok(Number(answers[3].retryAfter) >= 1);
    for (const answer of answers) {
      assert.doesNotMatch(answer.text, /Cannot read properties|TypeError|\bat \S+ \(|node_modules/);
      assert.equal(answer.text.includes(noisy), false);
    }
    const other = await query(zone.issueToken({ client_id: 'agent-a', scope: 'orders:read' }));
    assert.equal(JSON.parse(other.text).data.orders[0].by, 'agent-a');
  });

  void it('M19 in GraphQL: refusals are counted per address; past the limit TOO_MANY_REQUESTS (429 + Retry-After) instead of UNAUTHENTICATED', async () => {
    const token = forged(zone);
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) answers.push(await query(token));
    const errors = answers.map((a) => (JSON.parse(a.text) as { errors: { extensions: { code: string; error?: string } }[] }).errors[0].extensions);
    assert.deepEqual(errors.map((e) => e.code), [...Array.from({ length: LIMIT }, () => 'UNAUTHENTICATED'), 'TOO_MANY_REQUESTS']);
    assert.equal(errors[0].error, 'invalid_token');
    assert.deepEqual(answers.map((a) => a.status), [...Array.from({ length: LIMIT }, () => 401), 429]);
    assert.ok(Number(answers[LIMIT].retryAfter) >= 1);
    for (const answer of answers) {
      assert.doesNotMatch(answer.text, /Cannot read properties|TypeError|\bat \S+ \(|node_modules/);
      assert.equal(answer.text.includes(token), false);
    }
    assert.equal(api.logger.lines.some((l) => l.startsWith('Refusal limiter failed')), false, 'the 429 is an answer, not a limiter failure');
  });

  void it('N9 @Public() resolver without a token is counted per address, without a crash', async () => {
    const res = await query(undefined, '{ health }');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { data: { health: 'ok' } });
  });
});

@WebSocketGateway()
class PingGateway {
  @SubscribeMessage('whoami')
  whoami(@Agent('clientId') clientId: string) {
    return { event: 'whoami', data: clientId };
  }
}

@ObjectType()
class Row {
  @Field(() => String)
  id!: string;
}

/** A list of five rows, each with a field resolver: judged per row with fieldResolverEnhancers ['guards']. */
@Resolver(() => Row)
class RowsResolver {
  @Query(() => [Row])
  rows(): Row[] {
    return ['r1', 'r2', 'r3', 'r4', 'r5'].map((id) => ({ id }));
  }

  @ResolveField(() => String)
  label(@Parent() row: Row): string {
    return `label-${row.id}`;
  }
}

void describe('KeycardThrottlerGuard and GraphQL field resolvers (fieldResolverEnhancers: [guards])', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, {
      ...throttling,
      providers: [...throttling.providers, RowsResolver],
      graphql: { fieldResolverEnhancers: ['guards'] },
    });
  });
  after(async () => {
    await api?.close();
    await zone?.stop();
  });

  void it('N9 a list query counts once, not once per row: the limit is spent by operations, field resolvers are judged but not counted', async () => {
    const token = zone.issueToken({ client_id: 'agent-rows', scope: 'orders:read' });
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) {
      const res = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: '{ rows { id label } }' }),
      });
      answers.push({ status: res.status, body: JSON.parse(await res.text()) as { data?: { rows: { label: string }[] } | null; errors?: { extensions: { code: string } }[] } });
    }
    for (const answer of answers.slice(0, LIMIT)) {
      assert.equal(answer.status, 200);
      assert.equal(answer.body.errors, undefined);
      assert.deepEqual(answer.body.data?.rows.map((r) => r.label), ['label-r1', 'label-r2', 'label-r3', 'label-r4', 'label-r5']);
    }
    assert.equal(answers[LIMIT].status, 429);
    assert.equal(answers[LIMIT].body.errors?.[0]?.extensions.code, 'TOO_MANY_REQUESTS');
    // Anonymous: the root field is refused (counted as a refusal), no row is resolved.
    const anonymous = await fetch(api.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ rows { label } }' }) });
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(await anonymous.text(), /label-r/);
  });
});

@ObjectType()
@Directive('@key(fields: "id")')
class Entity {
  @Field(() => ID)
  id!: string;
}

@Resolver(() => Entity)
class EntitiesResolver {
  @Query(() => Entity)
  entity(): Entity {
    return { id: 'e-0' };
  }

  @ResolveReference()
  resolveReference(reference: { id: string }): Entity {
    return { id: reference.id };
  }
}

void describe('KeycardThrottlerGuard on a federation subgraph: one _entities field is one call', () => {
  let zone: TestZone;
  let app: INestApplication;
  let url: string;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    @Module({
      imports: [
        KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger: new CapturingLogger() }),
        GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloFederationDriver, autoSchemaFile: { federation: 2 }, fieldResolverEnhancers: ['guards'] }),
        ...throttling.imports,
      ],
      providers: [...throttling.providers, EntitiesResolver],
    })
    class SubgraphModule {}
    app = await NestFactory.create(SubgraphModule, new ExpressAdapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/graphql`;
  });
  after(async () => {
    await app?.close();
    await zone?.stop();
  });

  void it('N9 a gateway asking for 10 entities in one _entities field spends one call of the agent\'s limit, not 10', async () => {
    const token = zone.issueToken({ client_id: 'gateway', scope: 'orders:read' });
    const representations = Array.from({ length: 10 }, (_, i) => `{ __typename: "Entity", id: "e-${i}" }`).join(', ');
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: `{ _entities(representations: [${representations}]) { ... on Entity { id } } }` }),
      });
      answers.push({ status: res.status, body: JSON.parse(await res.text()) as { data?: { _entities: ({ id: string } | null)[] } | null; errors?: { extensions: { code: string } }[] } });
    }
    for (const answer of answers.slice(0, LIMIT)) {
      assert.equal(answer.status, 200);
      assert.equal(answer.body.errors, undefined);
      assert.equal(answer.body.data?._entities.length, 10);
    }
    assert.ok(answers[LIMIT].body.errors?.every((e) => e.extensions.code === 'TOO_MANY_REQUESTS'));
  });
});

void describe('KeycardThrottlerGuard in GraphQL over HTTP: the audit record of a rate-limited operation', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true }, throttling);
  });
  after(async () => {
    await api?.close();
    await zone?.stop();
  });

  const post = async (query: string, token?: string) => {
    const res = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query }),
    });
    const text = await res.text();
    await new Promise((resolve) => setTimeout(resolve, 20)); // the record is written when the response is finished
    return { status: res.status, text, record: auditLines(api.logger).at(-1)! };
  };
  const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: orders { id }`).join(' ')} }`;

  void it('N9 fields the throttler refused after the guard admitted them: the record gives rate_limited and lists them; a 429 operation says rate_limited', async () => {
    const token = zone.issueToken({ client_id: 'agent-audit', scope: 'orders:read' });
    const partial = await post(aliases(LIMIT + 2), token);
    assert.equal(partial.status, 200, 'part of the operation ran');
    assert.match(partial.text, /TOO_MANY_REQUESTS/);
    assert.deepEqual(
      { status: partial.record.status, reason: partial.record.reason, refused: partial.record.refused, agent: partial.record.agent },
      { status: 200, reason: 'rate_limited', refused: ['Query.orders'], agent: 'agent-audit' },
    );
    const limited = await post(aliases(1), token);
    assert.equal(limited.status, 429);
    assert.deepEqual({ status: limited.record.status, reason: limited.record.reason }, { status: 429, reason: 'rate_limited' });
    for (const text of [partial.text, limited.text, ...api.logger.lines]) assert.equal(text.includes(token), false);
  });

  void it('M19 a refused operation answered 429 by the refusal limiter is recorded 429 rate_limited, its record agreeing with its status', async () => {
    const token = forged(zone);
    let last = await post('{ orders { id } }', token);
    for (let i = 0; i < LIMIT && last.status !== 429; i++) last = await post('{ orders { id } }', token);
    assert.equal(last.status, 429);
    assert.deepEqual({ status: last.record.status, reason: last.record.reason }, { status: 429, reason: 'rate_limited' });
    assert.equal(last.text.includes(token), false);
  });
});

void describe('KeycardThrottlerGuard in a socket.io gateway', () => {
  let zone: TestZone;
  let app: Awaited<ReturnType<typeof NestFactory.create>>;
  let port: number;
  const logger = new CapturingLogger();
  const sockets: Socket[] = [];
  before(async () => {
    zone = await TestZone.start({ audience: R });
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true }), ...throttling.imports],
      providers: [PingGateway, ...throttling.providers],
    })
    class GatewayModule {}
    app = await NestFactory.create(GatewayModule, { logger: false });
    app.useWebSocketAdapter(app.get(KeycardConnections).guard(new IoAdapter(app), { allowAnonymous: true }));
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as { port: number }).port;
  });
  after(async () => {
    for (const socket of sockets) socket.disconnect();
    await app?.close();
    await zone?.stop();
  });

  const connect = (token: string | undefined) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = io(`http://127.0.0.1:${port}`, { auth: token === undefined ? {} : { token }, transports: ['websocket'], reconnection: false, forceNew: true });
      sockets.push(socket);
      socket.on('connect', () => resolve(socket));
      socket.on('connect_error', reject);
    });
  const ask = (socket: Socket) =>
    new Promise<[string, unknown]>((resolve) => {
      socket.onAny(function listener(event: string, data: unknown) {
        socket.offAny(listener);
        resolve([event, data]);
      });
      socket.emit('whoami', {});
    });

  void it('N9 no crash; a noisy agent gets an exception event with rate_limited, another agent is served', async () => {
    const noisy = await connect(zone.issueToken({ client_id: 'agent-ws-b', scope: 'orders:read' }));
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) answers.push(await ask(noisy));
    assert.deepEqual(answers.slice(0, LIMIT), Array.from({ length: LIMIT }, () => ['whoami', 'agent-ws-b']));
    assert.equal(answers[LIMIT][0], 'exception');
    assert.deepEqual(answers[LIMIT][1], { status: 'error', error: 'rate_limited', error_description: 'Too many requests, retry later' });
    const other = await connect(zone.issueToken({ client_id: 'agent-ws-a', scope: 'orders:read' }));
    assert.deepEqual(await ask(other), ['whoami', 'agent-ws-a']);
    // Both guards judged the message (the throttler runs the Keycard guard first): one audit line
    // (beside the connection's own, `connection socket.io`).
    assert.equal(logger.lines.filter((l) => l.includes('"agent":"agent-ws-a"') && l.includes('"route":"whoami"')).length, 1);
  });

  const RATE_LIMITED = { status: 'error', error: 'rate_limited', error_description: 'Too many requests, retry later' };

  void it('audit: a message the throttler refuses per agent has one line, 429 rate_limited with the agent (not 200)', async () => {
    const token = zone.issueToken({ client_id: 'agent-ws-audit', sub: 'carol', scope: 'orders:read' });
    const socket = await connect(token);
    logger.lines.length = 0;
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) answers.push(await ask(socket));
    assert.deepEqual(answers[LIMIT], ['exception', RATE_LIMITED]);
    const lines = auditLines(logger);
    assert.deepEqual(lines.map((l) => [l.method, l.route, l.status, l.reason]), [
      ...Array.from({ length: LIMIT }, () => ['WS', 'whoami', 200, undefined]),
      ['WS', 'whoami', 429, 'rate_limited'],
    ]);
    assert.equal(lines[LIMIT].agent, 'agent-ws-audit');
    assert.equal(lines[LIMIT].user, 'carol');
    assert.equal(typeof lines[LIMIT].tokenId, 'string');
    assert.equal([...logger.lines, JSON.stringify(answers)].some((l) => l.includes(token) || l.includes(token.split('.')[2])), false);
  });

  void it('N9 a message sent with an acknowledgement (emitWithAck) that the throttler refuses gets the 429 there too, as in the exception event', async () => {
    const socket = await connect(zone.issueToken({ client_id: 'agent-ws-ack', scope: 'orders:read' }));
    for (let i = 0; i < LIMIT; i++) assert.deepEqual(await ask(socket), ['whoami', 'agent-ws-ack']);
    const exceptions: unknown[] = [];
    socket.on('exception', (refusal: unknown) => exceptions.push(refusal));
    assert.deepEqual(await socket.timeout(3000).emitWithAck('whoami', {}), RATE_LIMITED);
    while (exceptions.length === 0) await new Promise((tick) => setTimeout(tick, 10));
    assert.deepEqual(exceptions, [RATE_LIMITED]);
  });

  void it('audit (M19): a refused message the limiter answers with 429 has one line, 429 rate_limited without an agent', async () => {
    const socket = await connect(undefined); // allowAnonymous: each message is refused, no_credentials
    logger.lines.length = 0;
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) answers.push(await ask(socket));
    assert.deepEqual(answers, [
      ...Array.from({ length: LIMIT }, () => ['exception', { status: 'error', error_description: 'Authentication is required' }]),
      ['exception', RATE_LIMITED],
    ]);
    const lines = auditLines(logger);
    assert.deepEqual(lines.map((l) => [l.method, l.route, l.status, l.reason]), [
      ...Array.from({ length: LIMIT }, () => ['WS', 'whoami', 401, 'no_credentials']),
      ['WS', 'whoami', 429, 'rate_limited'],
    ]);
    for (const line of lines) assert.deepEqual([line.agent, line.user, line.tokenId, line.scopes], [undefined, undefined, undefined, undefined]);
  });
});

@Controller()
class RpcHealthController {
  @Public()
  @GrpcMethod('Orders', 'Health')
  health() {
    return { id: 'health', by: 'ok' };
  }

  @GrpcMethod('Orders', 'Find')
  find(@Agent('clientId') clientId: string) {
    return { id: 'o-1', by: clientId };
  }

  @Public()
  @MessagePattern('orders.health')
  healthOverTcp() {
    return 'ok';
  }
}

type OrdersClient = grpc.Client & Record<'Find' | 'Health', (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null) => void) => void>;

/** An app serving RpcHealthController over gRPC and TCP on loopback, with `metadata`'s imports and providers. */
async function startRpcApp(metadata: { imports: NonNullable<ModuleMetadata['imports']>; providers?: Provider[] }) {
  @Module({ ...metadata, controllers: [RpcHealthController] })
  class RpcThrottledModule {}
  const app = await NestFactory.create(RpcThrottledModule, { logger: false, abortOnError: false });
  const proto = resolve('test/support/orders.proto');
  const { grpcUrl, tcp } = await listenHybrid(app, proto);
  const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(proto)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
  const client = new orders(grpcUrl, grpc.credentials.createInsecure()) as unknown as OrdersClient;
  return {
    tcp,
    call(method: 'Find' | 'Health', token?: string) {
      const meta = new grpc.Metadata();
      if (token !== undefined) meta.add('authorization', `Bearer ${token}`);
      return new Promise<grpc.ServiceError | null>((done) => client[method]({ id: 'o-1' }, meta, (error) => done(error)));
    },
    async close() {
      client.close();
      await tcp.close();
      await app.close();
    },
  };
}

void describe('KeycardThrottlerGuard in microservices (gRPC, TCP)', () => {
  let zone: TestZone;
  let rpc: Awaited<ReturnType<typeof startRpcApp>>;
  const trackers: string[] = [];

  before(async () => {
    zone = await TestZone.start({ audience: R });
    rpc = await startRpcApp({
      imports: [
        KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger: new CapturingLogger() }),
        ThrottlerModule.forRoot([{
          ttl: 60_000, limit: 1_000,
          generateKey: (_context, tracker, name) => {
            trackers.push(tracker);
            return `${name}-${tracker}`;
          },
        }]),
      ],
      providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
    });
  });
  after(async () => {
    await rpc?.close();
    await zone?.stop();
  });

  void it('M19 gRPC and TCP calls without an agent (public, refused) are counted per client address, not all in one "ip:undefined" bucket', async () => {
    assert.equal(await rpc.call('Health'), null);
    assert.equal((await rpc.call('Find', forged(zone)))?.code, grpc.status.UNAUTHENTICATED);
    assert.equal(await lastValueFrom(rpc.tcp.send('orders.health', {})), 'ok');
    assert.ok(trackers.length >= 3, trackers.join());
    assert.deepEqual([...new Set(trackers)], ['ip:127.0.0.1']);
  });
});

/** The two global guard orders: the README's (throttler in the app module, so first) and the Keycard guard first. */
const RPC_GUARD_ORDERS = {
  'throttler first': { imports: [], providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }] },
  'Keycard guard first': { imports: [ThrottlerAfterKeycardModule], providers: [] },
};

for (const [order, wiring] of Object.entries(RPC_GUARD_ORDERS)) {
  void describe(`audit log of gRPC calls answered 429 (${order})`, () => {
    let zone: TestZone;
    let rpc: Awaited<ReturnType<typeof startRpcApp>>;
    const logger = new CapturingLogger();

    before(async () => {
      zone = await TestZone.start({ audience: R });
      rpc = await startRpcApp({
        imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true }), ...throttling.imports, ...wiring.imports],
        providers: wiring.providers,
      });
    });
    after(async () => {
      await rpc?.close();
      await zone?.stop();
    });

    /** RESOURCE_EXHAUSTED with the fixed description; nothing of `token` in what the client got. */
    const assertRateLimited = (error: grpc.ServiceError | null, token: string) => {
      assert.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED, error?.message);
      assert.match(error.details, /Too many requests, retry later/);
      assert.equal(JSON.stringify([error.message, error.details, error.metadata.getMap()]).includes(token), false);
    };
    const findLines = () => auditLines(logger).filter((l) => l.route === 'RpcHealthController.find');

    void it('a call the throttler refuses per agent is audited 429 rate_limited with the agent', async () => {
      const token = zone.issueToken({ client_id: 'agent-rpc-audit', sub: 'dave', scope: 'orders:read' });
      logger.lines.length = 0;
      const errors = [];
      for (let i = 0; i < LIMIT + 1; i++) errors.push(await rpc.call('Find', token));
      assert.deepEqual(errors.slice(0, LIMIT), Array.from({ length: LIMIT }, () => null));
      assertRateLimited(errors[LIMIT], token);
      const lines = findLines();
      // The Keycard guard running first has admitted (and audited) the call before the throttler counts it (README, "Audit log").
      const admitted = order === 'throttler first' ? LIMIT : LIMIT + 1;
      assert.deepEqual(lines.map((l) => [l.method, l.status, l.reason]), [
        ...Array.from({ length: admitted }, () => ['RPC', 200, undefined]),
        ['RPC', 429, 'rate_limited'],
      ]);
      for (const line of lines) assert.deepEqual([line.agent, line.user, typeof line.tokenId], ['agent-rpc-audit', 'dave', 'string']);
      assert.equal(logger.lines.some((l) => l.includes(token) || l.includes(token.split('.')[2])), false);
    });

    void it('M19 a refused call the limiter answers with 429 is audited once, 429 rate_limited without an agent', async () => {
      const token = forged(zone);
      logger.lines.length = 0;
      const errors = [];
      for (let i = 0; i < LIMIT + 1; i++) errors.push(await rpc.call('Find', token));
      assert.deepEqual(errors.slice(0, LIMIT).map((e) => e?.code), Array.from({ length: LIMIT }, () => grpc.status.UNAUTHENTICATED));
      assertRateLimited(errors[LIMIT], token);
      const lines = findLines();
      assert.deepEqual(lines.map((l) => [l.method, l.status, l.reason]), [
        ...Array.from({ length: LIMIT }, () => ['RPC', 401, 'signature_invalid']),
        ['RPC', 429, 'rate_limited'],
      ]);
      for (const line of lines) assert.deepEqual([line.agent, line.user, line.tokenId], [undefined, undefined, undefined]);
      assert.equal(logger.lines.some((l) => l.includes(token) || l.includes(token.split('.')[2])), false);
    });

    void it('a @Public() call is not audited unless the throttler refuses it: then one line, 429 rate_limited', async () => {
      logger.lines.length = 0;
      const errors = [];
      for (let i = 0; i < LIMIT + 1; i++) errors.push(await rpc.call('Health'));
      assert.deepEqual(errors.map((e) => e?.code ?? null), [...Array.from({ length: LIMIT }, () => null), grpc.status.RESOURCE_EXHAUSTED]);
      assert.deepEqual(auditLines(logger).map((l) => [l.route, l.status, l.reason, l.agent]), [['RpcHealthController.health', 429, 'rate_limited', undefined]]);
    });
  });
}
