/**
 * Bounds the gateway messages handled per turn of the event loop (catalogue O5). `ws` emits every
 * frame of one TCP read synchronously (its `allowSynchronousEvents` default), and socket.io's
 * WebSocket transport sits on the same `ws` socket: a client sending a burst had a whole read's
 * messages judged, refused (or served) and answered back to back in one turn, up to ~1 600 small
 * messages per 64 KiB read, and the reads grew as the server fell behind. Timers and every other
 * socket waited for it.
 *
 * A paced socket's `message` events go through here: at most {@link MESSAGES_PER_TURN} are
 * handled per turn, process-wide; the rest wait, in order, for the next turns, and a socket with
 * messages waiting stops reading (`ws`' public `pause()`), so a burst holds at most one read's
 * messages in memory and the client is slowed by TCP itself. Waiting sockets take turns (round
 * robin), so one bursting client does not hold back another's messages. Turning `ws`' option off
 * instead (one message per turn) cost a full loop iteration per message: three times slower bursts.
 */

/** Messages handled per turn of the event loop, across every paced socket, before the next wait for a later turn. */
export const MESSAGES_PER_TURN = 64;

/** How to stop and restart a carrier's reading. */
export interface ReadControl {
  pause(): void;
  resume(): void;
}

/** What pacing needs of a carrier: an emitter that ends with `close` (and, by default, its own read control). */
export interface PacedSocket extends ReadControl {
  emit(event: string | symbol, ...args: unknown[]): boolean;
  once(event: 'close', listener: () => void): unknown;
}

/** An emitter whose paced event's waits are read-controlled by something else (`control`). */
type PacedEmitter = Pick<PacedSocket, 'emit' | 'once'>;

const PACED = Symbol('keycard.paced');

/** A socket's messages waiting for a later turn, and how to hand one on to its listeners. */
interface Waiting {
  readonly queue: unknown[][];
  readonly deliver: (args: unknown[]) => void;
  readonly control: ReadControl;
}

/** Sockets with messages waiting (a Map keeps their order for the round robin). */
const waiting = new Map<PacedEmitter, Waiting>();
let handledThisTurn = 0;
let turnEnding = false;
let draining = false;

/**
 * Paces the `message` events of a `ws` WebSocket (a `@nestjs/platform-ws` client, or the socket
 * under socket.io's WebSocket transport); anything else is left as it is. Idempotent.
 */
export function paceMessages(socket: unknown): void {
  if (isWebSocket(socket)) paceEvents(socket, 'message');
}

/**
 * Paces one event of any carrier (`message` of a `ws` socket, `data` of an engine.io connection):
 * while it has events waiting, `control` (by default the carrier itself) is paused, and resumed once
 * they are all handed on. Idempotent.
 */
export function paceEvents<T extends PacedEmitter>(socket: T, paced: string, control: ReadControl = socket as unknown as ReadControl): void {
  if ((socket as { [PACED]?: true })[PACED]) return;
  (socket as { [PACED]?: true })[PACED] = true;
  const emit = socket.emit;
  const deliver = (args: unknown[]): void => void emit.call(socket, paced, ...args);
  socket.emit = function pacedEmit(this: T, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== paced) return emit.call(this, event, ...args);
    const waits = waiting.get(socket);
    if (waits === undefined && handledThisTurn < MESSAGES_PER_TURN) {
      countHandled();
      return emit.call(this, event, ...args);
    }
    if (waits !== undefined) waits.queue.push(args);
    else startWaiting(socket, { queue: [args], deliver, control });
    return true;
  };
  socket.once('close', () => waiting.delete(socket));
}

function startWaiting(socket: PacedEmitter, waits: Waiting): void {
  waiting.set(socket, waits);
  waits.control.pause();
  if (draining) return;
  draining = true;
  setImmediate(drain);
}

function countHandled(): void {
  handledThisTurn++;
  if (turnEnding) return;
  turnEnding = true;
  setImmediate(endTurn);
}

function endTurn(): void {
  handledThisTurn = 0;
  turnEnding = false;
}

/**
 * Hands one turn's share to the waiting sockets in turn, then yields: a callback scheduled from
 * within `setImmediate` runs in the next turn, after timers and I/O.
 */
function drain(): void {
  try {
    let budget = MESSAGES_PER_TURN;
    while (budget > 0 && waiting.size > 0) {
      const share = Math.max(1, Math.floor(budget / waiting.size));
      for (const [socket, { queue, deliver, control }] of waiting) {
        const batch = queue.splice(0, Math.min(share, budget));
        budget -= batch.length;
        if (queue.length === 0 && waiting.delete(socket)) control.resume();
        for (const args of batch) deliver(args);
        if (budget <= 0) break;
      }
    }
  } finally {
    // A listener that throws fails as it would have without pacing; the other messages still go on.
    draining = waiting.size > 0;
    if (draining) setImmediate(drain);
  }
}

function isWebSocket(value: unknown): value is PacedSocket {
  const socket = value as (Partial<PacedSocket> & { readyState?: unknown }) | null;
  return typeof socket === 'object' && socket !== null && typeof socket.readyState === 'number' && typeof socket.emit === 'function'
    && typeof socket.pause === 'function' && typeof socket.resume === 'function' && typeof socket.once === 'function';
}
