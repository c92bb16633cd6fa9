/**
 * O5 over graphql-ws: its server reads the same `ws` socket, which emits a whole read's frames in
 * one turn; each `subscribe` is parsed, validated and judged. The door's messages are paced as the
 * gateways' are: at most a bounded batch is handled per turn of the event loop.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Int, Resolver, Subscription } from '@nestjs/graphql';
import WebSocket from 'ws';
import { Public } from '../lib/index.js';
import { MESSAGES_PER_TURN } from '../lib/contexts/message-pacing.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { TurnCounter } from './support/turn-counter.js';
import { startGraphQLApp } from './support/graphql-app.js';

const turns = new TurnCounter();

@Resolver()
class Ticks {
  @Public()
  @Subscription(() => Int)
  async *ticks(): AsyncGenerator<{ ticks: number }> {
    turns.note();
    yield { ticks: 1 };
  }
}

describe('O5 graphql-ws', () => {
  let zone: TestZone;
  let gql: Awaited<ReturnType<typeof startGraphQLApp>>;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    gql = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, { providers: [Ticks], graphqlWs: [] });
    turns.start();
  });
  afterAll(async () => {
    turns.stop();
    await gql?.app.close();
    await zone?.stop();
  });

  it('O5 graphql-ws: 3 000 subscribe messages written in one go are handled at most a bounded batch per turn of the event loop, each answered', async () => {
    const token = zone.issueToken({ client_id: 'agent-gql-burst', scope: 'orders:read' });
    const socket = new WebSocket(gql.wsUrl, 'graphql-transport-ws');
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } })));
      socket.once('message', (raw) => ((JSON.parse(String(raw)) as { type: string }).type === 'connection_ack' ? resolve() : reject(new Error(String(raw)))));
      socket.once('error', reject);
    });
    const count = 3_000;
    let completed = 0;
    const done = new Promise<void>((resolve) =>
      socket.on('message', (raw) => {
        if ((JSON.parse(String(raw)) as { type: string }).type === 'complete' && ++completed === count) resolve();
      }),
    );
    // One write of every frame, so the server reads them together (as a bursting client's would be).
    const frames = Array.from({ length: count }, (_, i) => JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: 'subscription { ticks }' } }));
    for (const frame of frames) socket.send(frame);
    await done;
    socket.terminate();
    expect(turns.most()).toBeLessThanOrEqual(2 * MESSAGES_PER_TURN);
    for (const line of gql.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);
});
