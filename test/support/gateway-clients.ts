import { io } from 'socket.io-client';
import WebSocket from 'ws';

/** A gateway's answer: the event Nest sends for a handler's `{ event, data }` result, or `exception`. */
export interface GatewayAnswer {
  event: string;
  data: unknown;
}

/**
 * Opens a `ws` connection to `port` with `token` as the upgrade's bearer token, sends `event` and
 * resolves with the first message back; the connection is closed afterwards.
 * @throws when the handshake is refused or the connection ends before an answer.
 */
export function askOverWs(port: number, token: string, event: string): Promise<GatewayAnswer> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
  return new Promise<GatewayAnswer>((resolve, reject) => {
    socket.once('message', (raw) => resolve(JSON.parse(String(raw)) as GatewayAnswer));
    socket.once('open', () => socket.send(JSON.stringify({ event, data: {} })));
    socket.once('error', reject);
    socket.once('close', (code) => reject(new Error(`ws closed (${code}) before an answer`)));
  }).finally(() => socket.terminate());
}

/**
 * Connects socket.io-client to `port` with `auth.token` = `token`, emits `event` and resolves with
 * the first event back; the socket is disconnected afterwards.
 * @throws when the handshake is refused (`connect_error`) or the socket disconnects before an answer.
 */
export function askOverSocketIo(port: number, token: string, event: string): Promise<GatewayAnswer> {
  const socket = io(`http://127.0.0.1:${port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise<GatewayAnswer>((resolve, reject) => {
    socket.onAny((name: string, data: unknown) => resolve({ event: name, data }));
    socket.once('connect', () => socket.emit(event, {}));
    socket.once('connect_error', reject);
    socket.once('disconnect', (reason) => reject(new Error(`socket.io disconnected (${reason}) before an answer`)));
  }).finally(() => socket.disconnect());
}
