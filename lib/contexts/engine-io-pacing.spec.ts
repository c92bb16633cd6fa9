import { describe, expect, it } from '@jest/globals';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { paceEngineIoConnection } from './engine-io-pacing.js';
import { MESSAGES_PER_TURN } from './message-pacing.js';

/** A stand-in for engine.io's long-polling transport: records the POSTs it reads. */
class FakePolling {
  readonly name = 'polling';
  readonly read: string[] = [];
  onDataRequest(req: IncomingMessage, _res: ServerResponse): void {
    this.read.push(String((req as unknown as { id: string }).id));
  }
}

/** A POST: its answer's status once answered, and whether its body was thrown away. */
function post(id: string) {
  const answer = { status: 0, destroyed: false };
  const req = { id, destroy: () => (answer.destroyed = true) } as unknown as IncomingMessage;
  const res = { writeHead: (status: number) => ((answer.status = status), res), end: () => res } as unknown as ServerResponse;
  return { req, res, answer };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function connectionOn(transport: FakePolling) {
  const connection = Object.assign(new EventEmitter(), { request: {} as IncomingMessage, transport });
  paceEngineIoConnection(connection);
  const seen: number[] = [];
  connection.on('data', (n: number) => seen.push(n));
  return { connection, seen };
}

describe('engine.io connection pacing (O5)', () => {
  it('O5 socket.io long-polling: while a payload\'s messages wait, the next POST is held unread and read once they are handed on; an overlapping one is refused 400', async () => {
    await nextTurn();
    const transport = new FakePolling();
    const { connection, seen } = connectionOn(transport);
    for (let i = 0; i < 3 * MESSAGES_PER_TURN; i++) connection.emit('data', i);
    expect(seen).toHaveLength(MESSAGES_PER_TURN);
    const second = post('second');
    const third = post('third');
    transport.onDataRequest(second.req, second.res);
    transport.onDataRequest(third.req, third.res);
    expect(transport.read).toEqual([]);
    expect(third.answer.status).toBe(400);
    for (let turn = 0; turn < 4 && seen.length < 3 * MESSAGES_PER_TURN; turn++) await nextTurn();
    expect(seen).toEqual([...Array(3 * MESSAGES_PER_TURN).keys()]);
    expect(transport.read).toEqual(['second']);
    expect(second.answer.status).toBe(0); // answered by engine.io once read, not here
  });

  it('O5 socket.io long-polling: a POST held for a connection that closes is answered 400 and its body thrown away, never read', async () => {
    await nextTurn();
    const transport = new FakePolling();
    const { connection, seen } = connectionOn(transport);
    for (let i = 0; i < 2 * MESSAGES_PER_TURN; i++) connection.emit('data', i);
    const held = post('held');
    transport.onDataRequest(held.req, held.res);
    connection.emit('close');
    await nextTurn();
    await nextTurn();
    expect(seen).toHaveLength(MESSAGES_PER_TURN); // the closed connection's waiting messages are dropped
    expect(held.answer).toEqual({ status: 400, destroyed: true });
    expect(transport.read).toEqual([]);
  });
});
