import { noteJudged } from './judged-calls.js';
import type { ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { UseDpopNonceException } from '../dpop/dpop.exceptions.js';
import { type AcceptedSchemes, BEARER_ONLY, parseBearerCredentials } from '../resource-server/bearer-token.extractor.js';
import { InvalidTokenException, type KeycardException, MissingCredentialsException } from '../resource-server/keycard.exceptions.js';
import type { CallKind, Carrier, Refusal } from './call-kind.interface.js';
import { connectionOf, openedAnonymously } from './connection-state.js';
import { loadWebSockets } from './optional-peers.js';

/** The parts of a socket.io `Socket` read here (a `ws` WebSocket has none of them). */
interface SocketIoClient {
  request?: IncomingMessage;
  handshake?: { auth?: Record<string, unknown>; headers?: IncomingMessage['headers'] };
}

/**
 * The token of a socket.io handshake: `auth.token` (the bare token, as socket.io clients send it)
 * or the `Authorization` header (Node clients' `extraHeaders`). Both at once is two tokens.
 * @throws InvalidRequestException / InvalidTokenException as for the HTTP header.
 */
export function handshakeToken(client: object, schemes: AcceptedSchemes = BEARER_ONLY): string | undefined {
  const handshake = (client as SocketIoClient).handshake;
  if (handshake === undefined) return undefined;
  const values: string[] = [];
  const token = handshake.auth?.token;
  if (typeof token === 'string') values.push(/^bearer /i.test(token) ? token : `Bearer ${token}`);
  // JSON from the client: a number, array or object is a malformed token, not an absent one (allowAnonymous).
  else if (token !== undefined && token !== null) throw new InvalidTokenException('token_malformed');
  const header = handshake.headers?.authorization;
  if (typeof header === 'string') values.push(header);
  // `auth.token` is a payload: always read as Bearer (a DPoP-bound one is refused, Q39); the header
  // is the handshake request's, read with the schemes of HTTP routes (`DPoP` when DPoP is on).
  return parseBearerCredentials(values, values.length === 1 && typeof header === 'string' ? schemes : BEARER_ONLY);
}

/** True when a socket.io handshake's credentials are its request's `Authorization` header (no `auth.token`): a DPoP proof can go with them. */
export function handshakeTokenInRequest(client: object): boolean {
  const handshake = (client as SocketIoClient).handshake;
  return handshake?.auth?.token == null && typeof handshake?.headers?.authorization === 'string';
}

/**
 * `@SubscribeMessage` handlers of WebSocket gateways (`@nestjs/platform-ws`, socket.io). The agent
 * was verified when the connection opened (see `KeycardConnections.guard`); each message is judged
 * again for expiry and scopes. Refusals are a `WsException`, which Nest sends as an `exception`
 * event: `{ status: 'error', error, error_description, scope? }`; a message sent with an
 * acknowledgement callback (socket.io) has it called with the same object.
 */
export class WsCallKind implements CallKind {
  readonly name = 'ws';
  readonly sharedCarrier = true;

  /** Also notes the call as judged: the guard Nest 11 binds to each gateway then lets it through (see `gateway-guards.ts`). */
  accepts(type: string, context: ExecutionContext): boolean {
    if (type !== 'ws') return false;
    noteJudged(context);
    return true;
  }

  /** @param unguarded called when a `ws` client reaches a handler without a verified handshake (says how to enable it). */
  constructor(private readonly unguarded: () => void) {}

  carrier(context: ExecutionContext): Carrier {
    return context.switchToWs().getClient<Carrier>();
  }

  httpRequest(_context: ExecutionContext, carrier: Carrier): IncomingMessage | undefined {
    return connectionOf(carrier)?.request ?? (carrier as SocketIoClient).request;
  }

  httpResponse(): undefined {
    return undefined;
  }

  isConnection(): boolean {
    return true;
  }

  connectionAgent(carrier: Carrier) {
    return connectionOf(carrier)?.agent;
  }

  openedAnonymously(carrier: Carrier): boolean {
    return openedAnonymously(carrier);
  }

  token(_context: ExecutionContext, carrier: Carrier): string | undefined {
    // A `ws` client keeps nothing of its handshake: without the connection hooks it has no token.
    if ((carrier as SocketIoClient).handshake === undefined && connectionOf(carrier) === undefined) this.unguarded();
    return handshakeToken(carrier);
  }

  refuse({ denial, context, requiredScopes }: Refusal): Promise<Error> {
    return refuseMessage(denial, context, requiredScopes);
  }

  describe(context: ExecutionContext): string {
    return `ws ${String(context.switchToWs().getPattern())}`;
  }
}

/**
 * A gateway message's refusal: the `WsException` Nest sends as the `exception` event
 * `{ status: 'error', error?, error_description, scope? }` (see {@link errorFields}).
 */
export async function refuseMessage(denial: KeycardException, context: ExecutionContext, requiredScopes?: string): Promise<Error> {
  const { WsException } = await loadWebSockets();
  const refusal = { status: 'error', ...errorFields(denial, requiredScopes) };
  // A socket.io client waiting on an acknowledgement (`emitWithAck`) gets the refusal there too,
  // not only as the `exception` event: its handler never runs, so nothing else would call it.
  acknowledgementOf(context)?.(refusal);
  relayToNativeSocket(context.switchToWs().getClient<Carrier>(), refusal);
  return new WsException(refusal);
}

/** Refusals on their way to a native WebSocket client, for the relay below; weak, as nothing may consume them. */
const relayed = new WeakSet<object>();
const RELAY = Symbol('keycard.exception-relay');

/** The parts of a `ws` WebSocket used by the relay. */
interface NativeSocket {
  readyState: number;
  send(data: string): void;
  on(event: 'exception', listener: (payload: unknown) => void): unknown;
  [RELAY]?: true;
}

/**
 * Makes sure a `ws` client receives the `exception` event of a refusal. NestJS 12's exception
 * filter sends it over the socket; NestJS 11's calls `client.emit('exception', …)`, which on a `ws`
 * WebSocket only dispatches locally, so the client never learnt why its message went unanswered.
 * One listener per socket sends what Nest emitted there, only for Keycard's own refusals (the app's
 * exceptions keep Nest's behaviour); under NestJS 12 it never fires.
 */
function relayToNativeSocket(carrier: Carrier, refusal: object): void {
  const socket = carrier as Partial<NativeSocket>;
  if (typeof socket.readyState !== 'number' || typeof socket.send !== 'function' || typeof socket.on !== 'function') return;
  relayed.add(refusal);
  if (socket[RELAY]) return;
  socket[RELAY] = true;
  socket.on('exception', (payload) => {
    if (typeof payload !== 'object' || payload === null || !relayed.delete(payload)) return;
    socket.send!(JSON.stringify({ event: 'exception', data: payload }));
  });
}

/** The message's acknowledgement callback, if the client sent one: the argument `@Ack()` gives a handler (a function). */
function acknowledgementOf(context: ExecutionContext): ((answer: unknown) => void) | undefined {
  return context.getArgs().find((arg): arg is (answer: unknown) => void => typeof arg === 'function');
}

/**
 * What a non-HTTP client learns of a refusal: the OAuth `error` (none for missing credentials),
 * the fixed description, the `scope` it names (Q12, Q16: a 401 of a call requiring
 * `requiredScopes` names them, a 403 the scopes lacking). Never a stack, a library message or the token.
 */
export function errorFields(denial: KeycardException, requiredScopes?: string): { error?: string; error_description: string; scope?: string; acr_values?: string; max_age?: string; dpop_nonce?: string } {
  const body = denial.getResponse() as { error: string; error_description: string };
  const scope = denial.scopeNamed(requiredScopes);
  return {
    ...(denial instanceof MissingCredentialsException ? {} : { error: body.error }),
    error_description: body.error_description,
    ...denial.challengeParams(), // RFC 9470 acr_values / max_age
    ...(scope === undefined ? {} : { scope }),
    // RFC 9449 §9: where no header can carry `DPoP-Nonce` (a socket.io `connect_error`), the nonce to retry with.
    ...(denial instanceof UseDpopNonceException ? { dpop_nonce: denial.nonce } : {}),
  };
}
