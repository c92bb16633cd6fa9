import type { ExecutionContext } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';

/**
 * The object a call's agent is put on (`user`) and the module's per-call state hangs from: the
 * HTTP request, a graphql-ws connection context, a WebSocket client, gRPC metadata.
 */
export type Carrier = object & { user?: unknown };

/** A refusal as a door answers it ({@link CallKind.refuse}). */
export interface Refusal {
  readonly denial: KeycardException;
  readonly context: ExecutionContext;
  readonly carrier: Carrier;
  /** The RFC 6750 challenge (`WWW-Authenticate`) and any other header of the answer; built when first read, so read it only where it is written. */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * This call's required scopes (space-joined), for the `scope` its error names
   * (`denial.scopeNamed()`, Q12, Q16): one denial may be shared by several calls with different
   * scopes (the fields of a GraphQL operation).
   */
  readonly requiredScopes?: string;
}

/**
 * The HTTP request line of a call that has one but no Node `IncomingMessage` (a gRPC call: HTTP/2
 * `:method` POST, `:path` `/package.Service/Method`, its metadata), for the checks made per HTTP
 * request: a DPoP proof names the method and URI it was made for (RFC 9449 §4.3).
 */
export interface RequestLine {
  /** The request method, as received (`POST`). */
  readonly method: string;
  /** The path the request named, without its query. */
  readonly path: string;
  /** The auth-scheme of the call's credentials, lower-cased (`bearer`, `dpop`); `undefined` without any. */
  readonly scheme: string | undefined;
  /** Every DPoP proof the call carried (`DPoP` header lines, `dpop` metadata values), as received. */
  readonly proofs: readonly string[];
}

/**
 * How the guard reads one kind of Nest execution context (`context.getType()`): where the token
 * is, which HTTP request (if any) chooses the resource, where the agent goes, and how a refusal
 * reaches the client. Implementations are stateless singletons, so judging a call allocates
 * nothing on the cache-hit path.
 */
export interface CallKind {
  /** `http`, `graphql`, `ws` or `rpc`: named in logs and audit lines. */
  readonly name: string;
  /**
   * True when several calls with their own rules share one carrier (the resolvers of one GraphQL
   * operation, the messages of a connection): an agent found on the carrier says nothing about
   * this call, so a second pass of the guard over the same call is recognised by its argument list.
   */
  readonly sharedCarrier: boolean;
  /**
   * True when this kind judges calls of `context`, whose `context.getType()` is `type`: the
   * kinds are asked in turn, the first that accepts judges the call.
   */
  accepts(type: string, context: ExecutionContext): boolean;
  /** The call's {@link Carrier}. */
  carrier(context: ExecutionContext): Carrier;
  /** The HTTP request behind the call (the resource choice and the challenge read it), if any. */
  httpRequest(context: ExecutionContext, carrier: Carrier): IncomingMessage | undefined;
  /**
   * The request line of a call with no Node `IncomingMessage` behind it but an HTTP request all the
   * same (gRPC); `undefined` when the call has none (TCP and other transports without metadata).
   */
  requestLine?(context: ExecutionContext, carrier: Carrier): RequestLine | undefined;
  /**
   * The client's address when the call has no HTTP request (a gRPC peer, a TCP socket), for
   * per-address counting; `undefined` when the transport does not tell.
   */
  clientAddress?(context: ExecutionContext, carrier: Carrier): string | undefined;
  /** The Node response when the call is answered over HTTP (the audit line waits for it to finish). */
  httpResponse(context: ExecutionContext, carrier: Carrier): ServerResponse | undefined;
  /**
   * True when the carrier outlives the call (a WebSocket connection): an agent found on it was
   * judged for another call and must be judged again (expiry, scopes).
   */
  isConnection(carrier: Carrier): boolean;
  /** The agent verified when the connection opened, if the connection hooks ran. */
  connectionAgent(carrier: Carrier): AgentContext | undefined;
  /**
   * True when the connection hooks opened this connection without any token (`allowAnonymous`):
   * its messages carry none either, so an `@OptionalAuth()` one is served anonymously (Q26).
   * Absent (false) for kinds without connections.
   */
  openedAnonymously?(carrier: Carrier): boolean;
  /**
   * The bearer token of the call, or `undefined` when it carries none.
   * @throws KeycardException for malformed or repeated credentials.
   */
  token(context: ExecutionContext, carrier: Carrier): string | undefined;
  /**
   * What the client of this context receives for a refusal: writes the refusal's headers (the RFC
   * 6750 challenge) where there is an HTTP response and returns the error to throw. Never a stack
   * trace, a library message or the token (catalogue N10).
   */
  refuse(refusal: Refusal): Error | Promise<Error>;
  /** The call for logs and the audit line: `GET /orders`, `graphql query Orders.orders`, `ws orders:watch`. */
  describe(context: ExecutionContext, carrier: Carrier): string;
  /**
   * Where several calls share one HTTP request and its one audit line (a GraphQL operation's
   * fields): the request for that line (`graphql query Orders`), not the call that came first.
   */
  describeRequest?(context: ExecutionContext, carrier: Carrier): string;
  /** This call's part of such a request (a GraphQL field's schema coordinate, `Query.orders`), named in the audit line when refused. */
  part?(context: ExecutionContext): string;
}
