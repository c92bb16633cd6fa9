/**
 * O5: a burst of refused messages on a per-message door costs, per message, a bounded multiple of the
 * same burst served, however many messages the connection refused before (a refusal is O(1)), and
 * never stalls the event loop past the row's bound. A socket.io
 * `@SubscribeMessage('write')` and a `ws` one that require `orders:write`, and a graphql-ws
 * `subscribe` of a field that requires it, from a connection whose token lacks it: every message is
 * refused in its context's shape. Mercurius subscriptions (Fastify) the same way as graphql-ws.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { acknowledgedGraphQLWs, startGraphQLApp } from './support/graphql-app.js';
import type { CapturingLogger } from './support/keycard-app.js';
import { startWritesGateway, WriteSubscriptions } from './support/write-handlers.js';

type Platform = 'ws' | 'socket.io' | 'graphql-ws' | 'mercurius';

/** A connection that sends `count` messages at once and resolves with every answer. */
interface Burst {
  /** Sends `count` messages: `name` is the event (graphql-ws: the subscribed field), by default the refused one. */
  send(count: number, name?: string): Promise<unknown[]>;
  close(): void;
}

/**
 * Sends in slices of 250 between turns of the event loop: the client shares the process with the
 * server, and one synchronous loop of 10 000 sends would be the client's own stall, not the server's.
 */
function sendInSlices(count: number, sendOne: () => void): void {
  let sent = 0;
  const slice = () => {
    for (const end = Math.min(count, sent + 250); sent < end; sent++) sendOne();
    if (sent < count) setImmediate(slice);
  };
  slice();
}

async function socketIoBurst(port: number, token: string): Promise<Burst> {
  const socket: Socket = io(`http://127.0.0.1:${port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return {
    send: (count, event = 'write') =>
      new Promise((resolve) => {
        const answers: unknown[] = [];
        const listener = (_event: string, data: unknown) => {
          answers.push(data);
          if (answers.length === count) {
            socket.offAny(listener);
            resolve(answers);
          }
        };
        socket.onAny(listener);
        sendInSlices(count, () => socket.emit(event, {}));
      }),
    close: () => socket.disconnect(),
  };
}

async function wsBurst(port: number, token: string): Promise<Burst> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return {
    send: (count, event = 'write') =>
      new Promise((resolve) => {
        const answers: unknown[] = [];
        const listener = (raw: WebSocket.RawData) => {
          answers.push(JSON.parse(String(raw)));
          if (answers.length === count) {
            socket.off('message', listener);
            resolve(answers);
          }
        };
        socket.on('message', listener);
        const message = JSON.stringify({ event, data: {} });
        sendInSlices(count, () => socket.send(message));
      }),
    close: () => socket.terminate(),
  };
}

/**
 * A graphql-ws connection (the `graphql-transport-ws` protocol, spoken over a real `ws` client so a
 * burst is exactly `count` `subscribe` messages) that resolves with the result of each (a refused
 * subscription is one `next` with the GraphQL error, then `complete`).
 */
async function graphqlWsBurst(url: string, token: string): Promise<Burst> {
  const socket = await acknowledgedGraphQLWs(url, token);
  let next = 0;
  return {
    send: (count, field = 'orderWrites') =>
      new Promise((resolve) => {
        const answers: unknown[] = [];
        const listener = (raw: WebSocket.RawData) => {
          const message = JSON.parse(String(raw)) as { type: string; payload?: unknown };
          if (message.type === 'complete') return; // after the refusal's result: not an answer of its own
          answers.push({ type: message.type, payload: message.payload });
          if (answers.length === count) {
            socket.off('message', listener);
            resolve(answers);
          }
        };
        socket.on('message', listener);
        sendInSlices(count, () => socket.send(JSON.stringify({ id: String(next++), type: 'subscribe', payload: { query: `subscription { ${field} }` } })));
      }),
    close: () => socket.terminate(),
  };
}

/** The one answer every refused message of `platform` gets. */
const REFUSED: Record<Platform, unknown> = {
  ws: { event: 'exception', data: { status: 'error', error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope: 'orders:write' } },
  'socket.io': { event: 'exception', data: { status: 'error', error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope: 'orders:write' } },
  // Mercurius answers a subscription that fails at once with an `error` message: the errors themselves.
  mercurius: {
    type: 'error',
    payload: [
      {
        message: 'The access token lacks a required scope',
        locations: [{ line: 1, column: 16 }],
        path: ['orderWrites'],
        extensions: { code: 'FORBIDDEN', error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope: 'orders:write' },
      },
    ],
  },
  'graphql-ws': {
    type: 'next',
    payload: {
      errors: [
        {
          message: 'The access token lacks a required scope',
          locations: [{ line: 1, column: 16 }],
          path: ['orderWrites'],
          extensions: { code: 'FORBIDDEN', error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope: 'orders:write' },
        },
      ],
    },
  },
};

/** The served reference of each platform: the message's name and the one answer each gets. */
const SERVED: Record<Platform, { name: string; answer: unknown }> = {
  ws: { name: 'read', answer: { event: 'served', data: true } },
  'socket.io': { name: 'read', answer: true },
  'graphql-ws': { name: 'publicWrites', answer: { type: 'next', payload: { data: { publicWrites: 1 } } } },
  mercurius: { name: 'publicWrites', answer: { type: 'next', payload: { data: { publicWrites: 1 } } } },
};

describe.each(['socket.io', 'ws', 'graphql-ws', 'mercurius'] as const)('O5 a burst of refused messages over %s', (platform) => {
  let zone: TestZone;
  let api: { app: INestApplication; logger: CapturingLogger; port: number };
  let burst: Burst;
  let token: string;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    token = zone.issueToken({ client_id: 'agent-burst', scope: 'orders:read' });
    if (platform === 'graphql-ws' || platform === 'mercurius') {
      const gql = await (platform === 'graphql-ws'
        ? startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, { providers: [WriteSubscriptions], graphqlWs: [] })
        : startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R }, { providers: [WriteSubscriptions], mercuriusSubscription: [] }));
      api = { app: gql.app, logger: gql.logger, port: 0 };
      burst = await graphqlWsBurst(gql.wsUrl, token);
    } else {
      api = await startWritesGateway(zone, platform);
      burst = await (platform === 'ws' ? wsBurst : socketIoBurst)(api.port, token);
    }
    await burst.send(200); // warm up: the first refusals load the context's error classes
  });
  afterAll(async () => {
    burst?.close();
    await api?.app.close();
    await zone?.stop();
  });

  /** One burst of `count` messages named `name` (by default refused): its answers, how long it took, and the most the loop was held meanwhile. */
  const burstOf = async (count: number, name?: string) => {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const started = performance.now();
    const answers = await burst.send(count, name);
    const ms = performance.now() - started;
    delay.disable();
    return { ms, answers, stall: delay.max / 1e6 };
  };

  /**
   * The reference, measured in the same run on the same machine: the same burst served to anyone
   * (`@Public()`), which costs what the transport, Nest and (graphql-ws) graphql-js's parse,
   * validate and subscribe cost per message before any guard. Refusing must not hold the loop more
   * than three times as long as serving does (or 200 ms, the row's bound, whichever is larger): a
   * refusal that grew with the burst, or a burst refused back to back in one turn, would.
   */
  const served = async () => {
    const reference = await burstOf(10_000, SERVED[platform].name);
    expect(new Set(reference.answers.map((a) => JSON.stringify(a)))).toEqual(new Set([JSON.stringify(SERVED[platform].answer)]));
    return reference;
  };

  /**
   * time(1 000) as the row means it: what a burst of 1 000 refused messages takes, averaged over ten
   * bursts in a row, so it carries its share of the collections and preemptions a burst of 10 000
   * always meets (the best single burst of 1 000 can miss them all: 10.4–11.4 × on a quiet machine
   * with no per-message growth, 12.6 once).
   */
  const thousandsTime = async () => {
    let ms = 0;
    for (let j = 0; j < 10; j++) {
      const run = await burstOf(1_000);
      expect(run.answers).toHaveLength(1_000);
      ms += run.ms;
    }
    return ms / 10;
  };

  /**
   * The cost bound compares bursts of the same size, refused and served, taken in turn on the same
   * connection: both carry the same collections, the same share of a busy machine's preemptions and
   * the same fixed costs, so their ratio holds still where time(10 000) / time(1 000) did not (a
   * best-of-5 burst of 1 000 can miss every major collection and preemption, one of 10 000 never
   * does: 10.4–11.4 for every door on a quiet machine with no per-message growth, 12.6 once).
   * Refused / served measured 1.0–1.9 on a quiet and on a busy machine (Mercurius the highest: it
   * logs and formats each failed subscription). The refused bursts come after the connection refused
   * 10 000 messages, so a refusal whose cost grows with the connection's refusals, or with the burst,
   * shows: a loop over the connection's earlier refusals in the refusal path (a few ns an element)
   * made it 2.8–5.3, and graphql-ws ran out of time.
   */
  it(`O5 ${platform}: 10 000 messages lacking orders:write are each refused insufficient_scope (graphql-ws: FORBIDDEN) naming it, the event loop never blocked past the bound, and the cost is linear: after 10 000 refusals on the connection, a refused message costs at most 2.5 served ones (best of 5 alternated: time(10 000 refused) ≤ 2.5 × time(10 000 served)), and time(10 000) / time(1 000) ≤ 12 (time(1 000): the mean of ten bursts of 1 000)`, async () => {
    const first = await burstOf(10_000);
    expect(first.answers).toHaveLength(10_000);
    const shapes = new Set(first.answers.map((a) => JSON.stringify(platform === 'socket.io' ? { event: 'exception', data: a } : a)));
    expect([...shapes].map((s) => JSON.parse(s) as unknown)).toEqual([REFUSED[platform]]);
    // Best of alternated runs, for times and stalls alike: a busy machine (the process not scheduled
    // for a while, which the delay monitor counts as a stall) or a major GC landing in one run slows
    // single runs; a refusal that holds the loop, or costs more, does so in every run.
    const best = { refused: Infinity, served: Infinity, small: Infinity, refusedStall: first.stall, servedStall: Infinity };
    for (let i = 0; i < 5; i++) {
      const reference = await served();
      const run = await burstOf(10_000);
      best.served = Math.min(best.served, reference.ms);
      best.servedStall = Math.min(best.servedStall, reference.stall);
      best.refused = Math.min(best.refused, run.ms);
      best.refusedStall = Math.min(best.refusedStall, run.stall);
      if (i < 3) best.small = Math.min(best.small, await thousandsTime());
    }
    // The figures, for a run that measures them (`O5_FIGURES=1`): a timing suite's passing runs say nothing otherwise.
    if (process.env.O5_FIGURES) process.stdout.write(`O5 ${platform} figures (ms): ${JSON.stringify(best)}, refused/served ${(best.refused / best.served).toFixed(2)}\n`);
    expect(best.refusedStall).toBeLessThanOrEqual(Math.max(200, 3 * best.servedStall));
    expect(best.refused / best.served).toBeLessThanOrEqual(2.5);
    expect(best.refused / best.small).toBeLessThanOrEqual(12); // the row's own bound: time(10 000) / time(1 000) ≤ 12
    for (const line of api.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 240_000); // graphql-ws parses, validates and subscribes each message before the guard: 110 000 of them
});
