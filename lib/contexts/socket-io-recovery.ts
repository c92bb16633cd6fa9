import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { type Principal, principalOf, samePrincipal } from '../decision/principal.js';
import { connectionOf } from './connection-state.js';

/**
 * socket.io connection-state recovery (catalogue O6–O8, decision Q21). With
 * `connectionStateRecovery` on, a client that reconnects with its session id (`pid`) and last
 * `offset` gets back its socket id, its rooms, its `data` and the packets it missed, and socket.io
 * skips the middlewares by default (`skipMiddlewares: true`): without this, a recovered socket
 * would carry no token, no expiry and another principal's rooms.
 *
 * Keycard therefore (a) makes socket.io run its middleware for recovered sockets too, and (c)
 * binds each session to the principal that opened it: the principal is stored with the session
 * when socket.io persists it, and a recovery is admitted only with a valid token of that same
 * principal (Q18; none only for a session that was anonymous, under `allowAnonymous`). socket.io
 * writes the missed packets while it builds the recovered socket, before any middleware or
 * handler could judge it, so they are withheld here and delivered once the socket is admitted.
 */

/** The parts of a socket.io server `Socket` used here. */
export interface IoSocket {
  readonly recovered?: boolean;
  readonly rooms: ReadonlySet<string>;
  data: unknown;
  join(rooms: string[]): unknown;
  leave(room: string): unknown;
  /** socket.io's own way to write a packet to this socket (what it does with missed packets). */
  packet?(packet: { type: number; data: unknown }): unknown;
}

/** What socket.io persists for a disconnected socket, and gives back on recovery (`socket.io-adapter` `Session`). */
interface Session {
  sid: string;
  pid: string;
  data: unknown;
  missedPackets?: unknown[];
  /** The principal that held the session (`null`: anonymous); set by Keycard, plain JSON so any adapter stores it. */
  keycardPrincipal?: Principal | null;
}

interface SessionAdapter {
  persistSession?(session: Session): unknown;
  restoreSession?(pid: string, offset: string): Promise<Session | null | undefined> | Session | null | undefined;
  [WRAPPED]?: true;
}

/** The parts of a socket.io `Namespace` (or `Server`, whose `sockets` is its main namespace) used here. */
interface IoNamespace {
  sockets?: Map<string, object> | IoNamespace;
  adapter?: SessionAdapter;
  server?: IoServer;
  opts?: IoServer['opts'];
}

interface IoServer {
  opts?: { connectionStateRecovery?: { skipMiddlewares?: boolean } };
}

/** A recovered socket's session as Keycard saw it: who held it, and the packets withheld from it. */
export interface Recovery {
  /** The principal that held the session; `null` when it was anonymous. */
  readonly owner: Principal | null;
  readonly missed: readonly unknown[];
}

const WRAPPED = Symbol('keycard.recovery-wrapped');
/** socket.io-parser's `PacketType.EVENT`. */
const EVENT = 2;

/** Restored sessions, by the `data` object socket.io hands the socket it builds (the one link between the two). */
const byData = new WeakMap<object, Recovery>();
/** The same, once a middleware or the connection handler found the socket. */
const bySocket = new WeakMap<object, Recovery>();

/**
 * Binds the sessions of a socket.io server (or namespace) returned by `IoAdapter.create` to their
 * principals, when connection-state recovery is on; nothing otherwise.
 * @throws Error when recovery is on but its adapter cannot be watched (no `persistSession` /
 *   `restoreSession`): the app would serve recovered sockets Keycard cannot judge, so it must not start.
 */
export function bindRecoveredSessions(created: object): void {
  const nsp = mainNamespace(created as IoNamespace);
  const server = nsp.server ?? (created as IoServer);
  const recovery = server.opts?.connectionStateRecovery;
  if (!recovery) return;
  const adapter = nsp.adapter;
  if (typeof adapter?.persistSession !== 'function' || typeof adapter.restoreSession !== 'function') {
    throw new Error(
      'KeycardConnections.guard(): socket.io connectionStateRecovery is on, but its adapter offers no persistSession/restoreSession that Keycard could bind to the principal of each session. ' +
        'Use a socket.io adapter with session support (socket.io 4.6 or later), or turn connectionStateRecovery off',
    );
  }
  // (a) The middleware judges a recovered socket as any other handshake (the connection handler re-judges it otherwise).
  recovery.skipMiddlewares = false;
  if (adapter[WRAPPED]) return;
  adapter[WRAPPED] = true;
  const persist = adapter.persistSession.bind(adapter);
  const restore = adapter.restoreSession.bind(adapter);
  adapter.persistSession = (session) => persist({ ...session, keycardPrincipal: ownerOf(nsp, session.sid) });
  adapter.restoreSession = async (pid, offset) => withheld(await restore(pid, offset));
}

/** The recovery of a socket socket.io rebuilt from a session; `undefined` for a fresh socket, or one whose session Keycard did not see restored. */
export function recoveryOf(socket: IoSocket): Recovery | undefined {
  let recovery = bySocket.get(socket);
  if (recovery === undefined && typeof socket.data === 'object' && socket.data !== null) {
    recovery = byData.get(socket.data);
    if (recovery !== undefined) bySocket.set(socket, recovery);
  }
  return recovery;
}

/** True when `agent` (none: anonymous) holds the session of `owner`: the same principal, or both anonymous. */
export function ownsSession(agent: AgentContext | undefined, owner: Principal | null): boolean {
  if (agent === undefined || owner === null) return agent === undefined && owner === null;
  return samePrincipal(agent, owner);
}

/** Writes the packets withheld at recovery, in order, once the socket is admitted (after its CONNECT). */
export function deliverMissed(socket: IoSocket): void {
  const recovery = bySocket.get(socket);
  bySocket.delete(socket);
  for (const data of recovery?.missed ?? []) socket.packet?.({ type: EVENT, data });
}

/**
 * Sends one event to this socket alone, the way socket.io sends missed packets: with recovery on,
 * `socket.emit` goes through the socket's own room, which a socket being judged has left.
 */
export function sendToSocket(socket: IoSocket & { emit(event: string, data: unknown): unknown }, event: string, data: unknown): void {
  if (typeof socket.packet === 'function') socket.packet({ type: EVENT, data: [event, data] });
  else socket.emit(event, data);
}

/**
 * Takes a recovered socket out of every room (its own id's included), so no broadcast reaches it
 * while it is judged; returns what puts it back.
 */
export function withdraw(socket: IoSocket): () => void {
  const rooms = [...socket.rooms];
  for (const room of rooms) socket.leave(room);
  return () => socket.join(rooms);
}

function mainNamespace(created: IoNamespace): IoNamespace {
  const sockets = created.sockets;
  // A `Server`'s `sockets` is its main namespace; a `Namespace`'s is a Map of its sockets.
  return sockets !== undefined && !(sockets instanceof Map) ? sockets : created;
}

/** The principal of a socket about to be persisted; `undefined` when Keycard did not open it. */
function ownerOf(nsp: IoNamespace, sid: string): Principal | null | undefined {
  const socket = (nsp.sockets as Map<string, object> | undefined)?.get(sid);
  const state = connectionOf(socket);
  if (state === undefined) return undefined;
  return state.agent === undefined ? null : principalOf(state.agent);
}

/**
 * A restored session without its missed packets, which wait for the socket to be admitted. A
 * session without a recorded principal (persisted by an instance without Keycard) is not
 * recovered: the client gets a fresh socket.
 */
function withheld(session: Session | null | undefined): Session | null {
  if (session === null || session === undefined) return null;
  const owner = session.keycardPrincipal;
  if (owner === undefined || typeof session.data !== 'object' || session.data === null) return null;
  byData.set(session.data, { owner, missed: session.missedPackets ?? [] });
  return { ...session, missedPackets: [] };
}
