import type { IncomingMessage, ServerResponse } from 'node:http';
import { paceEvents } from './message-pacing.js';

/**
 * Paces a socket.io connection's messages whatever its engine.io transport (catalogue O5). Over
 * long-polling one HTTP POST carries a payload of many packets (up to `maxHttpBufferSize`, 1 MB by
 * default: ~75 000 small events) that engine.io decodes and emits back to back, and the WebSocket
 * transport's `ws` socket emits a whole read's frames at once. Pacing the connection's `data` events
 * (the messages socket.io decodes) covers both and keeps their order across an upgrade, since the
 * connection outlives its transports; heartbeats are not held back.
 *
 * While messages wait, the connection stops reading: the WebSocket transport's socket is paused, and
 * a long-polling POST is not read until they are handed on (TCP holds the rest), so a client cannot
 * make the server queue more than one payload. A second POST while one is held is refused 400, as
 * engine.io refuses overlapping POSTs.
 */

/** The parts of an engine.io `Socket` (a connection) used here. */
export interface EngineIoConnection {
  readonly request: IncomingMessage;
  readonly transport?: EngineIoTransport;
  emit(event: string | symbol, ...args: unknown[]): boolean;
  once(event: 'close', listener: () => void): unknown;
}

/** The parts of an engine.io transport used here: `socket` is the WebSocket transport's `ws` socket. */
interface EngineIoTransport {
  readonly name?: string;
  readonly socket?: { pause?(): void; resume?(): void };
  onDataRequest?(req: IncomingMessage, res: ServerResponse): void;
}

/** A long-polling transport's POSTs held while its connection is paused. */
interface HeldPosts {
  paused: boolean;
  held?: [IncomingMessage, ServerResponse];
}

const HOLD = Symbol('keycard.heldPosts');

/** Paces an engine.io connection's `data` events (each a message for socket.io), on any transport. */
export function paceEngineIoConnection(connection: EngineIoConnection): void {
  let paused: EngineIoTransport | undefined;
  paceEvents(connection, 'data', {
    pause: () => {
        paused = connection.transport;
        if (paused !== undefined) pauseTransport(paused);
      },
    resume: () => {
      if (paused !== undefined) resumeTransport(paused);
      paused = undefined;
    },
  });
  connection.once('close', () => dropHeld(connection.transport));
}

function pauseTransport(transport: EngineIoTransport): void {
  if (typeof transport.onDataRequest === 'function') holdPosts(transport).paused = true;
  else transport.socket?.pause?.();
}

function resumeTransport(transport: EngineIoTransport): void {
  const posts = (transport as { [HOLD]?: HeldPosts })[HOLD];
  if (posts === undefined) return transport.socket?.resume?.();
  posts.paused = false;
  const held = posts.held;
  posts.held = undefined;
  if (held !== undefined) transport.onDataRequest!(...held);
}

/** Wraps a long-polling transport's POST handling (once) so a POST can wait, unread, while paused. */
function holdPosts(transport: EngineIoTransport): HeldPosts {
  const existing = (transport as { [HOLD]?: HeldPosts })[HOLD];
  if (existing !== undefined) return existing;
  const posts: HeldPosts = { paused: false };
  (transport as { [HOLD]?: HeldPosts })[HOLD] = posts;
  const original = transport.onDataRequest!;
  transport.onDataRequest = function heldDataRequest(this: EngineIoTransport, req, res) {
    if (!posts.paused) return original.call(this, req, res);
    if (posts.held !== undefined) return void res.writeHead(400).end(); // engine.io's rule for overlapping POSTs
    posts.held = [req, res];
  };
  return posts;
}

/** A POST held for a connection that closed is answered 400 and its body never read. */
function dropHeld(transport: EngineIoTransport | undefined): void {
  const posts = transport === undefined ? undefined : (transport as { [HOLD]?: HeldPosts })[HOLD];
  const held = posts?.held;
  if (posts === undefined || held === undefined) return;
  posts.held = undefined;
  held[1].writeHead(400).end();
  held[0].destroy();
}
