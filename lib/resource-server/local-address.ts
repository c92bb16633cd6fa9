import type { IncomingMessage } from 'node:http';

const LOCAL_ADDRESS = Symbol('keycard.local-address');

interface Remembered {
  [LOCAL_ADDRESS]?: string;
}

/**
 * Keeps the local address a request reached while its connection is still open, for the
 * development-mode check (catalogue Q15) of calls judged later. socket.io judges the handshake and
 * every message against the engine's first request, and with long-polling (the client's default)
 * that request's connection may be gone by then: Node then reports no `localAddress` at all.
 */
export function rememberLocalAddress(request: IncomingMessage): void {
  const remembered = request as Remembered;
  remembered[LOCAL_ADDRESS] ??= request.socket?.localAddress;
}

/** The local address the request reached: the one remembered on arrival, else its connection's (if still open). */
export function localAddressOf(request: IncomingMessage): string | undefined {
  return (request as Remembered)[LOCAL_ADDRESS] ?? request.socket?.localAddress;
}
