import { noteJudged } from './judged-calls.js';
import type { ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { UseDpopNonceException } from '../dpop/dpop.exceptions.js';
import { type AcceptedSchemes, BEARER_ONLY, parseBearerCredentials } from '../resource-server/bearer-token.extractor.js';
import { InvalidTokenException, type KeycardException, MissingCredentialsException } from '../resource-server/keycard.exceptions.js';
import type { CallKind, Carrier, Refusal } from './call-kind.interface.js';
import { connectionOf, openedAnonymously } from './connection-state.js';
import { loadWebSockets, webSocketsLoaded } from './optional-peers.js';
import { withoutStack } from '../resource-server/without-stack.js';

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
  const read: HandshakeRead = { token: handshake.auth?.token, header: handshake.headers?.authorization, schemes, found: undefined };
  const before = READ.get(handshake);
  // Every message of a connection reads the same handshake: parsed once, as long as nothing in it changed.
  if (before !== undefined && before.token === read.token && before.header === read.header && before.schemes === schemes) return before.found;
  read.found = parseHandshake(read);
  READ.set(handshake, read);
  return read.found;
}

/** What a handshake's credentials were read from, and the token found there (only kept when reading it threw nothing). */
interface HandshakeRead {
  readonly token: unknown;
  readonly header: unknown;
  readonly schemes: AcceptedSchemes;
  found: string | undefined;
}

/** The last read of each socket.io handshake (weak: it goes with its socket). */
const READ = new WeakMap<object, HandshakeRead>();

function parseHandshake({ token, header, schemes }: HandshakeRead): string | undefined {
  const values: string[] = [];
  if (typeof token === 'string') values.push(/^bearer /i.test(token) ? token : `Bearer ${token}`);
  // JSON from the client: a number, array or object is a malformed token, not an absent one (allowAnonymous).
  else if (token !== undefined && token !== null) throw new InvalidTokenException('token_malformed');
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
    return clientOf(context);
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

  refuse({ denial, context, requiredScopes }: Refusal): Error | Promise<Error> {
    return messageRefusal(denial, context, requiredScopes);
  }

  describe(context: ExecutionContext): string {
    const args = context.getArgs();
    return `ws ${String(args[args.length - 1])}`; // the pattern, as `switchToWs().getPattern()` reads it
  }
}

/**
 * The client of a gateway message (`switchToWs().getClient()`, read without it: that assigns three
 * new closures to the context on every call, per refused message of a burst).
 */
function clientOf(context: ExecutionContext): Carrier {
  return context.getArgByIndex<Carrier>(0);
}

/**
 * A gateway message's refusal: the `WsException` Nest sends as the `exception` event
 * `{ status: 'error', error?, error_description, scope? }` (see {@link errorFields}).
 */
export async function refuseMessage(denial: KeycardException, context: ExecutionContext, requiredScopes?: string): Promise<Error> {
  await loadWebSockets();
  return messageRefusal(denial, context, requiredScopes);
}

/**
 * {@link refuseMessage}, synchronous once `@nestjs/websockets` is loaded (after the first
 * refusal): a burst of refused messages then costs no promise per message (catalogue O5).
 */
function messageRefusal(denial: KeycardException, context: ExecutionContext, requiredScopes?: string): Error | Promise<Error> {
  const websockets = webSocketsLoaded();
  if (websockets === undefined) return refuseMessage(denial, context, requiredScopes);
  const refusal = fieldsInto({ status: 'error' }, denial, requiredScopes);
  // A socket.io client waiting on an acknowledgement (`emitWithAck`) gets the refusal there too,
  // not only as the `exception` event: its handler never runs, so nothing else would call it.
  acknowledgementOf(context)?.(refusal);
  relayToNativeSocket(clientOf(context), refusal);
  // No stack: Nest sends a WsException's error and never logs it, so capturing one is pure cost.
  return withoutStack(quickWsException(websockets.WsException), refusal);
}

type WsExceptionClass = typeof import('@nestjs/websockets').WsException;
let quick: WsExceptionClass | undefined;

/**
 * Nest's `WsException`, its message (`Ws Exception`, from the class name) worked out once rather
 * than by a regex match and join per refused message. The same name and message as Nest's own, and
 * an instance of it, which is what Nest's filter sends as the `exception` event.
 */
function quickWsException(WsException: WsExceptionClass): WsExceptionClass {
  if (quick !== undefined) return quick;
  const message = new WsException({}).message;
  const Quick = class extends WsException {
    override initMessage(): void {
      this.message = message;
    }
  };
  Object.defineProperty(Quick, 'name', { value: WsException.name });
  return (quick = Quick);
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
  for (const arg of context.getArgs()) if (typeof arg === 'function') return arg as (answer: unknown) => void;
  return undefined;
}

/**
 * What a non-HTTP client learns of a refusal: the OAuth `error` (none for missing credentials),
 * the fixed description, the `scope` it names (Q12, Q16: a 401 of a call requiring
 * `requiredScopes` names them, a 403 the scopes lacking). Never a stack, a library message or the token.
 */
export function errorFields(denial: KeycardException, requiredScopes?: string): ErrorFields {
  return fieldsInto({}, denial, requiredScopes);
}

/** The fields of {@link errorFields}. */
export interface ErrorFields {
  error?: string;
  error_description: string;
  scope?: string;
  acr_values?: string;
  max_age?: string;
  dpop_nonce?: string;
}

/** Adds {@link errorFields} to `target`, in that order, built in place (one object per refused message, not five). */
function fieldsInto<T extends object>(target: T, denial: KeycardException, requiredScopes?: string): T & ErrorFields {
  const fields = target as T & { -readonly [K in keyof ErrorFields]: ErrorFields[K] };
  const body = denial.getResponse() as { error: string; error_description: string };
  if (!(denial instanceof MissingCredentialsException)) fields.error = body.error;
  fields.error_description = body.error_description;
  const params = denial.challengeParams(); // RFC 9470 acr_values / max_age
  if (params !== undefined) Object.assign(fields, params);
  const scope = denial.scopeNamed(requiredScopes);
  if (scope !== undefined) fields.scope = scope;
  // RFC 9449 §9: where no header can carry `DPoP-Nonce` (a socket.io `connect_error`), the nonce to retry with.
  if (denial instanceof UseDpopNonceException) fields.dpop_nonce = denial.nonce;
  return fields;
}
