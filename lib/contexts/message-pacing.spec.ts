import { describe, expect, it } from '@jest/globals';
import { EventEmitter } from 'node:events';
import { holdMessages, MESSAGES_PER_TURN, paceMessages, paceServerSockets } from './message-pacing.js';

/** A stand-in for a `ws` WebSocket: an emitter that can pause and resume reading. */
class FakeSocket extends EventEmitter {
  readyState = 1;
  readonly calls: string[] = [];
  pause(): void {
    this.calls.push('pause');
  }
  resume(): void {
    this.calls.push('resume');
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const upTo = (count: number, prefix = '') => [...Array(count).keys()].map((i) => (prefix === '' ? i : `${prefix}${i}`));

describe('message pacing (O5)', () => {
  it('O5 a burst in one turn: the first messages are handled at once, the rest in later turns in order, the socket paused meanwhile and resumed once', async () => {
    await nextTurn();
    const socket = new FakeSocket();
    paceMessages(socket);
    paceMessages(socket); // idempotent
    const seen: number[] = [];
    socket.on('message', (data: number) => seen.push(data));
    for (let i = 0; i < 3 * MESSAGES_PER_TURN; i++) socket.emit('message', i, false);
    expect(seen).toEqual(upTo(MESSAGES_PER_TURN));
    expect(socket.calls).toEqual(['pause']);
    for (let turn = 0; turn < 4 && seen.length < 3 * MESSAGES_PER_TURN; turn++) await nextTurn();
    expect(seen).toEqual(upTo(3 * MESSAGES_PER_TURN));
    expect(socket.calls).toEqual(['pause', 'resume']);
    let closed = false;
    socket.on('close', () => (closed = true)); // other events are not paced
    socket.emit('close');
    expect(closed).toBe(true);
  });

  it('O5 sockets waiting together take turns: a bursting socket does not hold back the others', async () => {
    await nextTurn();
    const [a, b] = [new FakeSocket(), new FakeSocket()];
    paceMessages(a);
    paceMessages(b);
    const order: string[] = [];
    a.on('message', (data: number) => order.push(`a${data}`));
    b.on('message', (data: number) => order.push(`b${data}`));
    for (let i = 0; i < 4 * MESSAGES_PER_TURN; i++) a.emit('message', i);
    b.emit('message', 0);
    while (order.length < 4 * MESSAGES_PER_TURN + 1) await nextTurn();
    expect(order.indexOf('b0')).toBeLessThan(order.indexOf(`a${2 * MESSAGES_PER_TURN}`));
    expect(order.filter((m) => m.startsWith('a'))).toEqual(upTo(4 * MESSAGES_PER_TURN, 'a'));
  });

  it('O5 a socket closed with messages waiting is dropped from the queue; anything that is not a WebSocket is left alone', async () => {
    await nextTurn();
    const socket = new FakeSocket();
    paceMessages(socket);
    const seen: number[] = [];
    socket.on('message', (data: number) => seen.push(data));
    for (let i = 0; i < 2 * MESSAGES_PER_TURN; i++) socket.emit('message', i);
    socket.emit('close');
    await nextTurn();
    await nextTurn();
    expect(seen).toEqual(upTo(MESSAGES_PER_TURN));
    const plain = new EventEmitter();
    const emit = plain.emit;
    paceMessages(plain);
    paceMessages(undefined);
    expect(plain.emit).toBe(emit);
  });

  it('O5 a held socket (its connection_init being judged) gets nothing, paused, while others go on; released, its messages follow in order, a bounded batch per turn', async () => {
    await nextTurn();
    const [held, other] = [new FakeSocket(), new FakeSocket()];
    paceMessages(held);
    paceMessages(other);
    const seen: string[] = [];
    held.on('message', (data: number) => seen.push(`h${data}`));
    other.on('message', (data: number) => seen.push(`o${data}`));
    const release = holdMessages(held);
    for (let i = 0; i < 3 * MESSAGES_PER_TURN; i++) held.emit('message', i);
    other.emit('message', 0);
    for (let turn = 0; turn < 3; turn++) await nextTurn();
    expect(seen).toEqual(['o0']);
    expect(held.calls).toEqual(['pause']);
    release();
    release(); // once
    await nextTurn();
    expect(seen.length - 1).toBeLessThanOrEqual(MESSAGES_PER_TURN);
    for (let turn = 0; turn < 5 && seen.length < 3 * MESSAGES_PER_TURN + 1; turn++) await nextTurn();
    expect(seen.slice(1)).toEqual(upTo(3 * MESSAGES_PER_TURN, 'h'));
    expect(held.calls).toEqual(['pause', 'resume']);
    expect(holdMessages(new EventEmitter())()).toBeUndefined(); // not paced: nothing to hold
  });

  it('O5 a ws server paced once: every socket it opens is paced from its connection event, before any handler reads', async () => {
    await nextTurn();
    const server = new EventEmitter();
    paceServerSockets(server);
    paceServerSockets(server); // once
    paceServerSockets(undefined);
    expect(server.listenerCount('connection')).toBe(1);
    const socket = new FakeSocket();
    server.emit('connection', socket);
    const seen: number[] = [];
    socket.on('message', (data: number) => seen.push(data));
    for (let i = 0; i < 2 * MESSAGES_PER_TURN; i++) socket.emit('message', i);
    expect(seen).toEqual(upTo(MESSAGES_PER_TURN));
    while (seen.length < 2 * MESSAGES_PER_TURN) await nextTurn();
    expect(seen).toEqual(upTo(2 * MESSAGES_PER_TURN));
  });
});
