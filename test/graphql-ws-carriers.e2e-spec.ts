/**
 * One lifecycle for GraphQL subscription carriers (catalogue O9, O12, decision Q18, and the finding
 * "graphql-ws without the module's hooks"): Apollo's graphql-ws server with
 * `KeycardConnections.graphqlWs()` and Mercurius with `mercuriusSubscription()`, the real
 * `graphql-ws` client and a raw `ws` client speaking `graphql-transport-ws`, over loopback, in
 * real time (a 2 s token, `clockToleranceSeconds: 0`).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Int, Resolver, Subscription } from '@nestjs/graphql';
import { setTimeout as delay } from 'node:timers/promises';
import WebSocket from 'ws';
import { Public, RequireScopes } from '../lib/index.js';
import { CarrierLifecycle } from '../lib/decision/carrier-lifecycle.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak } from './support/contexts.js';
import { R } from './support/forge.js';
import { GRAPHQL_SERVERS, graphqlWsClient, startGraphQLApp, type GraphQLServer, type RunningGraphQLApp } from './support/graphql-app.js';
import { auditRecordsV1 } from './support/audit-records.js';

const PUSH_EVERY_MS = 200;
const LATE_AFTER_MS = 500;

/** One item every 200 ms, numbered. */
async function* every200ms<T>(item: (n: number) => T): AsyncGenerator<T> {
  for (let n = 0; ; n++) {
    await delay(PUSH_EVERY_MS);
    yield item(n);
  }
}

@Resolver()
class PushResolver {
  @RequireScopes('orders:read')
  @Subscription(() => Int)
  orderPushes(): AsyncGenerator<{ orderPushes: number }> {
    return every200ms((n) => ({ orderPushes: n }));
  }

  @Public()
  @Subscription(() => Int)
  publicPushes(): AsyncGenerator<{ publicPushes: number }> {
    return every200ms((n) => ({ publicPushes: n }));
  }
}

const withHooks = (server: GraphQLServer) => (server === 'apollo' ? { graphqlWs: [] as [] } : { mercuriusSubscription: [] as [] });

const auditSince = (app: RunningGraphQLApp, from: number) =>
  auditRecordsV1(app.logger.lines.slice(from));

/** Waits until `done()` holds, at most 3 s. @throws naming `what` when it still does not hold then. */
async function until(what: string, done: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 3000; !done(); await delay(10)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

interface Collected {
  items: { value: unknown; at: number }[];
  errors: unknown[];
  closed?: { code: number; reason: string; at: number };
}

/** Subscribes with the `graphql-ws` client for `ms`, collecting every item with its arrival time, and how the socket closed. */
async function collect(url: string, connectionParams: Record<string, unknown>, query: string, ms: number): Promise<Collected> {
  const collected: Collected = { items: [], errors: [] };
  const client = graphqlWsClient(url, connectionParams, (closed) => (collected.closed = { ...closed, at: Date.now() }));
  client.subscribe<Record<string, unknown>>({ query }, {
    next: (value) => {
      if (value.data) collected.items.push({ value: Object.values(value.data)[0], at: Date.now() });
      if (value.errors) collected.errors.push(...value.errors);
    },
    // A GraphQL error list; a close event is what `closed` records.
    error: (error) => Array.isArray(error) && collected.errors.push(...(error as unknown[])),
    complete: () => undefined,
  });
  await delay(ms);
  await client.dispose();
  return collected;
}

describe.each(GRAPHQL_SERVERS)('GraphQL subscription carriers: %s', (_name, server) => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, auditLog: true }, {
      providers: [PushResolver],
      ...withHooks(server),
    });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it(`O9 ${server === 'apollo' ? 'graphql-ws subscription (Apollo)' : 'Mercurius subscription'}: items every 200 ms for 4 s to a 2 s token → none late, closed 4401 invalid_token`, async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = zone.issueToken({ scope: 'orders:read', exp });
    const collected = await collect(api.wsUrl, { token }, 'subscription { orderPushes }', 4000);
    expect(collected.items.filter((i) => i.at <= exp * 1000).length).toBeGreaterThan(0);
    expect(collected.items.filter((i) => i.at > exp * 1000 + LATE_AFTER_MS)).toEqual([]);
    expect(collected.errors).toEqual([]);
    expect(collected.closed).toEqual({ code: 4401, reason: 'invalid_token', at: expect.any(Number) });
    expect(collected.closed!.at).toBeGreaterThanOrEqual(exp * 1000);
    expect(api.app.get(CarrierLifecycle).size).toBe(0);
    expectNoLeak(collected, [token], api.logger.lines);
  });

  it(`O12 ${server}: a second connection_init carrying bob's token after alice's was admitted → closed 4429, the connection stays alice's, one connection record (101, alice)`, async () => {
    const alice = zone.issueToken({ scope: 'orders:read', sub: 'alice', client_id: 'agent-a' });
    const bob = zone.issueToken({ scope: 'orders:read orders:write', sub: 'bob', client_id: 'agent-b' });
    const before = api.logger.lines.length;
    const socket = new WebSocket(api.wsUrl, 'graphql-transport-ws');
    const received: unknown[] = [];
    socket.on('message', (raw) => received.push(JSON.parse(String(raw))));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise((resolve) => socket.once('open', resolve));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { token: alice } }));
    await until('connection_ack', () => received.some((m) => (m as { type: string }).type === 'connection_ack'));
    // Alice's subscription runs as alice…
    socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { orderPushes }' } }));
    await until('a first item', () => received.some((m) => (m as { type: string }).type === 'next'));
    // …and a second connection_init does not make it bob's.
    socket.send(JSON.stringify({ type: 'connection_init', payload: { token: bob } }));
    expect(await closed).toEqual({ code: 4429, reason: 'Too many initialisation requests' });
    const records = auditSince(api, before);
    expect(records.filter((r) => r.method === 'GRAPHQL-WS')).toEqual([
      { event: 'keycard.audit', issuer: expect.any(String), agent: 'agent-a', user: 'alice', scopes: ['orders:read'], tokenId: expect.any(String), method: 'GRAPHQL-WS', route: 'connection', status: 101, durationMs: expect.any(Number) },
    ]);
    // Nothing was decided for bob: no record, no log line names him.
    expect(records.filter((r) => r.agent === 'agent-b' || r.user === 'bob')).toEqual([]);
    expect(api.logger.lines.slice(before).filter((l) => l.includes('agent-b'))).toEqual([]);
    // Alice's binding ends with her socket (the server sees the close a moment after the client).
    await until('the server to close the binding', () => api.app.get(CarrierLifecycle).size === 0);
    expectNoLeak([received, api.logger.lines], [alice, bob], api.logger.lines);
  });
});

/** Apollo with `'graphql-ws': true` and no `KeycardConnections.graphqlWs()`: fail closed, as Mercurius without its hook. */
describe("GraphQL subscriptions on Apollo without KeycardConnections.graphqlWs() ('graphql-ws': true)", () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, auditLog: true }, {
      providers: [PushResolver],
      graphqlWs: 'unguarded',
    });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('O9 (N5) a protected subscription is refused UNAUTHENTICATED with its scope whatever the token, no item, nothing leaked, one log line naming the fix', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = zone.issueToken({ scope: 'orders:read', exp });
    const outcomes = [
      await collect(api.wsUrl, { token }, 'subscription { orderPushes }', 600),
      await collect(api.wsUrl, { authorization: `Bearer ${token}` }, 'subscription { orderPushes }', 600),
    ];
    for (const outcome of outcomes) {
      expect(outcome.items).toEqual([]);
      const [first] = outcome.errors as unknown[];
      const error = (Array.isArray(first) ? first[0] : first) as { message: string; extensions?: Record<string, unknown> };
      expect(error.extensions).toEqual({ code: 'UNAUTHENTICATED', error_description: error.message, scope: 'orders:read' });
      expectFixedDescription(error.message);
    }
    expectNoLeak(outcomes, [token], api.logger.lines);
    expect(api.logger.lines.filter((l) => l.includes('KeycardConnections.graphqlWs()'))).toEqual([
      "Keycard refused a graphql-ws subscription: its connection was not opened through KeycardConnections.graphqlWs(), so its token is neither verified nor ended at expiry. Enable it with subscriptions: { 'graphql-ws': keycard.graphqlWs() } in the ApolloDriverConfig (GraphQLModule.forRootAsync, inject: [KeycardConnections])",
    ]);
  });

  it('N8 a @Public() subscription is still served', async () => {
    const outcome = await collect(api.wsUrl, {}, 'subscription { publicPushes }', 700);
    expect(outcome.items.length).toBeGreaterThan(0);
    expect(outcome.errors).toEqual([]);
  });
});
