import { describe, expect, it } from '@jest/globals';
import { EventEmitter } from 'node:events';
import { MESSAGES_PER_TURN, paceMessages } from './message-pacing.js';

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
});
