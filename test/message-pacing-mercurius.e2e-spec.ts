/**
 * O5 over Mercurius subscriptions (Fastify, `KeycardConnections.mercuriusSubscription()`): Mercurius
 * reads the `ws` socket through an async iterator that queues every frame of a read, and handles the
 * queue back to back in microtasks, so a burst written in one go was handled in one turn of the event
 * loop. Frames written with `connection_init`, before it is acknowledged, wait in that queue and are
 * handled once it is: pacing must start when the socket opens, not in `onConnect`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Int, Resolver, Subscription } from '@nestjs/graphql';
import WebSocket from 'ws';
import { Public, RequireScopes, TokenExchangeError } from '../lib/index.js';
import { MESSAGES_PER_TURN } from '../lib/contexts/message-pacing.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { TurnCounter } from './support/turn-counter.js';
import { acknowledgedGraphQLWs, startGraphQLApp } from './support/graphql-app.js';

const turns = new TurnCounter();

@Resolver()
class Ticks {
  @Public()
  @Subscription(() => Int)
  async *ticks(): AsyncGenerator<{ ticks: number }> {
    turns.note();
    yield { ticks: 1 };
  }

  @RequireScopes('orders:write')
  @Subscription(() => Int)
  async *writes(): AsyncGenerator<{ writes: number }> {
    yield { writes: 1 };
  }

  /** Admitted, then its events fail with a token exchange the zone could not serve (answered by the module, Q8). */
  @RequireScopes('orders:read')
  @Subscription(() => Int)
  async *outage(): AsyncGenerator<{ outage: number }> {
    throw new TokenExchangeError('the token endpoint could not be reached', 'unavailable', undefined, 503, 30);
  }
}

interface GraphQLError {
  extensions?: { code?: string; error?: string; scope?: string };
}

interface Frame {
  id?: string;
  type: string;
  /** `next`: an execution result; `error`: the errors themselves (graphql-transport-ws). */
  payload?: { data?: unknown; errors?: GraphQLError[] } | GraphQLError[];
}

/** The errors of an answer, whether a `next` carrying them or an `error` frame. */
function errorsOf(frame: Frame): GraphQLError[] | undefined {
  return Array.isArray(frame.payload) ? frame.payload : frame.payload?.errors;
}

/**
 * Opens a `graphql-transport-ws` connection and writes `connection_init` and `count` `subscribe`
 * frames of `field` in one go (one `ws` write each, before any answer): resolves with the first
 * answer of each id (`next` or `error`), in the order they came.
 */
async function burst(url: string, token: string, field: string, count: number): Promise<Frame[]> {
  const socket = new WebSocket(url, 'graphql-transport-ws');
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const answers: Frame[] = [];
  const answered = new Set<string>();
  const done = new Promise<void>((resolve, reject) => {
    socket.on('close', (code) => reject(new Error(`closed ${code} after ${answers.length} answers`)));
    socket.on('message', (raw) => {
      const frame = JSON.parse(String(raw)) as Frame;
      if ((frame.type !== 'next' && frame.type !== 'error') || answered.has(frame.id!)) return;
      answered.add(frame.id!);
      answers.push(frame);
      if (answers.length === count) resolve();
    });
  });
  socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
  for (let i = 0; i < count; i++) socket.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: `subscription { ${field} }` } }));
  try {
    await done;
  } finally {
    socket.terminate();
  }
  return answers;
}

/** What a test reads of Mercurius's connection object (`this` of the app's `onConnect`): its subscriptions by id. */
interface MercuriusSubscriptions {
  subscriptionContexts: Map<string, unknown>;
  subscriptionIters: Map<string, unknown>;
}

/** Sends `count` `subscribe` frames of `field` on an acknowledged connection and resolves once each id has its first answer. */
async function subscribeMany(socket: WebSocket, field: string, count: number): Promise<Frame[]> {
  const answers = new Map<string, Frame>();
  const done = new Promise<void>((resolve) => {
    const listener = (raw: WebSocket.RawData) => {
      const frame = JSON.parse(String(raw)) as Frame;
      if ((frame.type !== 'next' && frame.type !== 'error') || answers.has(frame.id!)) return;
      answers.set(frame.id!, frame);
      if (answers.size === count) {
        socket.off('message', listener);
        resolve();
      }
    };
    socket.on('message', listener);
  });
  for (let i = 0; i < count; i++) socket.send(JSON.stringify({ id: `${field}-${i}`, type: 'subscribe', payload: { query: `subscription { ${field} }` } }));
  await done;
  return [...answers.values()];
}

describe('O5 Mercurius subscriptions', () => {
  let zone: TestZone;
  let gql: Awaited<ReturnType<typeof startGraphQLApp>>;
  /** Mercurius's connection objects, in the order they opened (the app's own `onConnect` is called on them). */
  const connections: MercuriusSubscriptions[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    const onConnect = function (this: MercuriusSubscriptions) {
      connections.push(this);
      return true;
    };
    gql = await startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R }, { providers: [Ticks], mercuriusSubscription: [{ onConnect }] });
    turns.start();
  });
  afterAll(async () => {
    turns.stop();
    await gql?.app.close();
    await zone?.stop();
  });

  it('O5 mercurius: connection_init and 3 000 subscribe frames written in one go are handled at most a bounded batch per turn of the event loop, each answered, in order', async () => {
    const token = zone.issueToken({ client_id: 'agent-mercurius-burst', scope: 'orders:read' });
    const answers = await burst(gql.wsUrl, token, 'ticks', 3_000);
    expect(answers.map((a) => a.id)).toEqual(Array.from({ length: 3_000 }, (_, i) => String(i)));
    expect(new Set(answers.map((a) => JSON.stringify(a.payload)))).toEqual(new Set([JSON.stringify({ data: { ticks: 1 } })]));
    expect(turns.most()).toBeLessThanOrEqual(2 * MESSAGES_PER_TURN);
    for (const line of gql.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);

  it('O5 mercurius: 3 000 refused subscribe frames written with connection_init are each refused FORBIDDEN insufficient_scope naming orders:write, in order, the connection left open', async () => {
    const token = zone.issueToken({ client_id: 'agent-mercurius-refused', scope: 'orders:read' });
    const answers = await burst(gql.wsUrl, token, 'writes', 3_000);
    expect(answers.map((a) => a.id)).toEqual(Array.from({ length: 3_000 }, (_, i) => String(i)));
    const codes = new Set(answers.map((a) => JSON.stringify(errorsOf(a)?.map((e) => [e.extensions?.code, e.extensions?.error, e.extensions?.scope]))));
    expect([...codes]).toEqual([JSON.stringify([['FORBIDDEN', 'insufficient_scope', 'orders:write']])]);
    for (const line of gql.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);

  it('O5 mercurius: 2 000 refused subscriptions on one open connection leave nothing behind on it (Mercurius kept the stream and result of every subscription whose subscribe failed until the connection closed), and the connection still serves', async () => {
    const token = zone.issueToken({ client_id: 'agent-mercurius-kept', scope: 'orders:read' });
    const socket = await acknowledgedGraphQLWs(gql.wsUrl, token);
    try {
      const connection = connections.at(-1)!;
      const refused = await subscribeMany(socket, 'writes', 2_000);
      expect(new Set(refused.map((a) => JSON.stringify(errorsOf(a)?.map((e) => [e.extensions?.code, e.extensions?.error]))))).toEqual(new Set([JSON.stringify([['FORBIDDEN', 'insufficient_scope']])]));
      expect([connection.subscriptionContexts.size, connection.subscriptionIters.size]).toEqual([0, 0]);
      const served = await subscribeMany(socket, 'ticks', 10);
      expect(new Set(served.map((a) => JSON.stringify(a.payload)))).toEqual(new Set([JSON.stringify({ data: { ticks: 1 } })]));
    } finally {
      socket.terminate();
    }
    for (const line of gql.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);

  it('O5 mercurius: 200 admitted subscriptions whose events fail with a token exchange error are each answered SERVICE_UNAVAILABLE and leave nothing behind on the connection, which still serves', async () => {
    const token = zone.issueToken({ client_id: 'agent-mercurius-outage', scope: 'orders:read' });
    const socket = await acknowledgedGraphQLWs(gql.wsUrl, token);
    try {
      const connection = connections.at(-1)!;
      const failed = await subscribeMany(socket, 'outage', 200);
      expect(new Set(failed.map((a) => `${a.type} ${JSON.stringify(errorsOf(a)?.map((e) => [e.extensions?.code, e.extensions?.error]))}`))).toEqual(
        new Set([`error ${JSON.stringify([['SERVICE_UNAVAILABLE', 'temporarily_unavailable']])}`]),
      );
      expect([connection.subscriptionContexts.size, connection.subscriptionIters.size]).toEqual([0, 0]);
      const served = await subscribeMany(socket, 'ticks', 10);
      expect(new Set(served.map((a) => JSON.stringify(a.payload)))).toEqual(new Set([JSON.stringify({ data: { ticks: 1 } })]));
    } finally {
      socket.terminate();
    }
  }, 60_000);
});
