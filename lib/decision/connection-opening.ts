import type { IncomingMessage } from 'node:http';
import type { ProtectedResource } from '../resource-server/protected-resource.js';

/**
 * A connection being opened, as a {@link TokenValidator} sees it (its `call` is then `undefined`):
 * what judges it and where its token came from, so a rule that needs the HTTP request (a DPoP
 * proof, RFC 9449 §4.3) can tell a `ws` upgrade from a token sent in a message payload.
 * @publicApi
 */
export interface ConnectionOpening {
  /** The connection in log lines: `ws connection`, `socket.io connection`, `graphql-ws connection`. */
  readonly name: string;
  /** The resource that judges it. */
  readonly resource: ProtectedResource;
  /** The token it opens with (never log it). */
  readonly token: string;
  /**
   * The HTTP request whose `Authorization` header carried the token: a `ws` upgrade, or the
   * socket.io handshake request when the client sent the token in its headers (`extraHeaders`);
   * `undefined` when the token travelled in a message payload (socket.io `auth`, graphql-ws
   * `connectionParams`).
   */
  readonly request?: IncomingMessage;
}
