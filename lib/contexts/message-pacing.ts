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
/** Paced sockets whose messages all wait, whatever the turn's budget, until released ({@link holdMessages}). */
const held = new Set<PacedEmitter>();
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

/** `ws` servers whose every new socket is paced ({@link paceServerSockets}). */
const pacedServers = new WeakSet<object>();

/**
 * Paces the `message` events of every socket a `ws` server opens from now on, from its `connection`
 * event: before the socket's own handler reads a frame. Mercurius queues a whole read's frames in
 * an async iterator and handles them back to back in microtasks (`connection_init` and a burst
 * written with it alike), so pacing from `onConnect` would come too late for them. Anything else,
 * or a server already paced, is left as it is.
 */
export function paceServerSockets(server: unknown): void {
  const wss = server as { on?: (event: 'connection', listener: (socket: unknown) => void) => unknown } | null | undefined;
  if (typeof wss?.on !== 'function' || pacedServers.has(wss)) return;
  pacedServers.add(wss);
  wss.on('connection', (socket) => paceMessages(socket));
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
    if (waits === undefined && handledThisTurn < MESSAGES_PER_TURN && (held.size === 0 || !held.has(socket))) {
      countHandled();
      return emit.call(this, event, ...args);
    }
    if (waits !== undefined) waits.queue.push(args);
    else startWaiting(socket, { queue: [args], deliver, control });
    return true;
  };
  socket.once('close', () => {
    waiting.delete(socket);
    held.delete(socket);
  });
}

/**
 * Holds a paced socket's messages (and its reading) until the returned function is called, e.g.
 * while its `connection_init` is judged: a server that queues the frames it receives meanwhile (as
 * Mercurius does) would otherwise handle all it queued back to back once the judgement is done.
 * A socket that is not paced is left as it is.
 * @returns releases them: they are handed on, a bounded batch per turn, in order.
 */
export function holdMessages(socket: unknown): () => void {
  const paced = socket as PacedEmitter & { [PACED]?: true };
  if (typeof paced !== 'object' || paced === null || paced[PACED] !== true) return () => undefined;
  held.add(paced);
  return () => {
    if (held.delete(paced) && waiting.has(paced)) scheduleDrain();
  };
}

function startWaiting(socket: PacedEmitter, waits: Waiting): void {
  waiting.set(socket, waits);
  waits.control.pause();
  scheduleDrain();
}

function scheduleDrain(): void {
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
    let ready = readyCount();
    while (budget > 0 && ready > 0) {
      const share = Math.max(1, Math.floor(budget / ready));
      for (const [socket, { queue, deliver, control }] of waiting) {
        if (held.size > 0 && held.has(socket)) continue;
        const batch = queue.splice(0, Math.min(share, budget));
        budget -= batch.length;
        if (queue.length === 0 && waiting.delete(socket)) control.resume();
        for (const args of batch) deliver(args);
        if (budget <= 0) break;
      }
      ready = readyCount();
    }
  } finally {
    // A listener that throws fails as it would have without pacing; the other messages still go on.
    // Held sockets wait for their release, which drains again.
    draining = readyCount() > 0;
    if (draining) setImmediate(drain);
  }
}

/** The waiting sockets that are not held. */
function readyCount(): number {
  if (held.size === 0) return waiting.size;
  let ready = 0;
  for (const socket of waiting.keys()) if (!held.has(socket)) ready++;
  return ready;
}

function isWebSocket(value: unknown): value is PacedSocket {
  const socket = value as (Partial<PacedSocket> & { readyState?: unknown }) | null;
  return typeof socket === 'object' && socket !== null && typeof socket.readyState === 'number' && typeof socket.emit === 'function'
    && typeof socket.pause === 'function' && typeof socket.resume === 'function' && typeof socket.once === 'function';
}
