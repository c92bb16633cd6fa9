import { denialLine, denialLogLevel, logAtLevel } from '../logging/denial-log-level.js';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown, Optional, type WebSocketAdapter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { DecisionEvents, refusalOutcome } from '../decision/decision-events.js';
import { type AcceptedSchemes, extractBearerToken } from '../resource-server/bearer-token.extractor.js';
import { acceptedSchemes } from '../dpop/accepted-schemes.js';
import { takeOpeningNonceHeaders } from '../dpop/nonce-announcements.js';
import { authorizationScheme } from '../dpop/authorization-scheme.js';
import { withDpopChallenge } from '../dpop/dpop-challenge.js';
import type { ConnectionOpening } from '../decision/connection-opening.js';
import {
  InvalidRequestException, type KeycardException, MissingCredentialsException,
} from '../resource-server/keycard.exceptions.js';
import { TokenVerifier } from '../resource-server/token-verifier.js';
import { CarrierLifecycle, type CarrierEndReason } from '../decision/carrier-lifecycle.js';
import { denialOf } from './stream-expiry.interceptor.js';
import { TokenValidators } from '../decision/token-validator.js';
import type { Principal } from '../decision/principal.js';
import { type ConnectionState, connectionOf, openedConnection, setConnection } from './connection-state.js';
import { rememberLocalAddress } from '../resource-server/local-address.js';
import { GatewayGuards } from './gateway-guards.js';
import { holdMessages, paceMessages, paceServerSockets } from './message-pacing.js';
import { endRuns, flushRuns, startsRun } from './connection-refusal-runs.js';
import { type EngineIoConnection, paceEngineIoConnection } from './engine-io-pacing.js';
import { connectionParamsToken, MERCURIUS_CONNECTION } from './graphql.context.js';
import { KeycardContexts } from './keycard-contexts.js';
import { endedSubscription } from './stream-exchange-failures.js';
import {
  bindRecoveredSessions, deliverMissed, type IoSocket, ownsSession, recoveryOf, sendToSocket, withdraw,
} from './socket-io-recovery.js';
import { errorFields, handshakeToken, handshakeTokenInRequest } from './ws.context.js';

/** The graphql-ws `Context` parts used here (`graphql-ws` is never imported). */
interface GraphQLWsContext {
  connectionParams?: Readonly<Record<string, unknown>>;
  extra?: { socket?: ClosableSocket; request?: IncomingMessage };
}

interface ClosableSocket {
  close(code: number, reason: string): void;
}

/** The parts of a `ws` WebSocket used here. */
interface WsClient extends ClosableSocket {
  once(event: 'close', listener: () => void): unknown;
}

/** The parts of a socket.io server `Socket` used here. */
interface SocketIoSocket extends IoSocket {
  readonly request: IncomingMessage;
  readonly connected: boolean;
  /** The engine.io connection it shares with the client's other namespaces (and its other CONNECT packets). */
  readonly conn?: object;
  emit(event: string, data: unknown): unknown;
  disconnect(close: boolean): unknown;
  once(event: 'disconnect', listener: () => void): unknown;
}

/** One connection being opened, as {@link KeycardConnections.open} judges it. */
interface Opening {
  /** Reads the connection's token; `undefined` when it carries none. */
  token: () => string | undefined;
  request: IncomingMessage | undefined;
  /** The call in log lines and audit records (`socket.io connection`). */
  call: string;
  /** Whether a connection without any token opens (without an agent). */
  anonymous: boolean;
  /** For a resumed session: the principal that holds it (`null`: anonymous); the connection must be that principal. */
  owner?: Principal | null;
  /** True when the token is `request`'s `Authorization` header (a `ws` upgrade), not a payload's: a DPoP proof can go with it (Q39). */
  tokenInRequest?: boolean;
  /**
   * The transport connection several openings can share (socket.io: the engine.io connection, which
   * carries a CONNECT packet per namespace, and again after a refusal): its refusals are logged
   * once per run (O5), as refused messages are.
   */
  transport?: object;
}

/** A graphql-ws server hook, typed loosely so the result fits `graphql-ws`'s `ServerOptions` without importing it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Hook = (...args: any[]) => any;

/** The graphql-ws server options {@link KeycardConnections.graphqlWs} composes with (the app's own hooks). */
export interface GraphQLWsHooks {
  onConnect?: Hook;
  onNext?: Hook;
  onClose?: Hook;
  [option: string]: unknown;
}

/** The Mercurius `subscription` options {@link KeycardConnections.mercuriusSubscription} composes with (the app's own). */
export interface MercuriusSubscriptionHooks {
  onConnect?: Hook;
  [option: string]: unknown;
}

/**
 * What Mercurius's connection object (`this` of its `onConnect` call, read by shape: `mercurius` is
 * never imported) offers: the `ws` socket and the connection context, holding the Fastify upgrade request.
 */
interface MercuriusConnection {
  socket?: MercuriusSocket;
  context?: { request?: { raw?: IncomingMessage } };
  /** The Fastify plugin context Mercurius's subscription route lives in. */
  fastify?: FastifyWithWebSockets;
  /** Mercurius's subscriptions of the connection: the `subscribe()` result by subscription id. */
  subscriptionIters?: Map<unknown, unknown>;
  /** Sends a subscription's error (`error` message). */
  sendError?(error: unknown, id: unknown): unknown;
  /** Ends a subscription as the client's `complete` does: its context and result leave the connection's maps. */
  handleGQLComplete?(id: unknown): unknown;
}

/** A Fastify instance (a plugin context), read by shape: `fastify` is never imported. */
interface FastifyWithWebSockets {
  /** The `ws` server `@fastify/websocket` decorates its context with. */
  websocketServer?: unknown;
}

/** A Mercurius `connection_init` as {@link KeycardConnections.mercuriusSubscription}'s `onConnect` got it. */
interface MercuriusInit {
  data: { payload?: unknown } | undefined;
  anonymous: boolean;
  /** The app's own `onConnect`. */
  theirs: Hook | undefined;
}

interface MercuriusSocket extends WsClient {
  send(...args: unknown[]): unknown;
}

/** WebSocket close codes of a refused or ended connection (graphql-ws uses 4401 / 4403 too). */
const CLOSE_CODE: Record<number, number> = { 400: 4400, 401: 4401, 403: 4403, 503: 1013 };

type VerifyDone = (result: boolean, code?: number, message?: string, headers?: Record<string, string>) => void;
type NextFn = (error?: Error & { data?: unknown }) => void;

/** Cancels a graphql-ws connection's end at expiry (see `atExpiry`). */
const CANCEL_EXPIRY = Symbol('keycard.cancel-expiry');

/** Mercurius connections whose `connection_init` Keycard already judged (the principal is bound once). */
const initialised = new WeakSet<object>();

/**
 * Mercurius (16.x) keeps each subscription's context (a stream) and `subscribe()` result in maps of
 * its connection until the client completes it or the connection closes, but a subscription whose
 * `subscribe()` answered errors (every refused one) is answered `error` and never completed: each
 * refused message left ~2.7 KB on its connection until it closed (the O5 burst suite's 65 000
 * refusals on one connection: ~175 MB, marked by every major collection). So is one whose events
 * failed with a refusal (a failed token exchange in its async generator, `StreamExchangeFailures`).
 * Once Mercurius sends such a subscription's error, it is ended as a `complete` would end it. Read
 * by shape; a Mercurius without these members is left as it is.
 */
function forgetFailedSubscriptions(connection: MercuriusConnection): void {
  const { sendError, handleGQLComplete } = connection;
  if (typeof sendError !== 'function' || typeof handleGQLComplete !== 'function') return;
  connection.sendError = function (this: MercuriusConnection, error: unknown, id: unknown) {
    if (failedSubscribe(this.subscriptionIters?.get(id)) || endedSubscription(error)) handleGQLComplete.call(this, id);
    return sendError.call(this, error, id);
  };
}

/** A `subscribe()` result that is an execution result with errors, not an event stream. */
function failedSubscribe(result: unknown): boolean {
  return typeof result === 'object' && result !== null && Array.isArray((result as { errors?: unknown }).errors)
    && typeof (result as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] !== 'function';
}

/**
 * Verifies WebSocket connections when they open, through the guard's own verification path (one
 * cache, one set of rules), so a connection without a valid token never reaches a resolver or a
 * gateway (catalogue N5, N6), unless anonymous connections are allowed: then only `@Public()` ones (N8). The guard then judges every message or subscription again (expiry,
 * scopes) with the agent found here.
 * @publicApi
 */
@Injectable()
export class KeycardConnections implements OnApplicationBootstrap, OnApplicationShutdown {
  /** The `Authorization` schemes of a `ws` upgrade: those of HTTP routes (`DPoP` when DPoP is on). */
  private readonly schemes: AcceptedSchemes;
  /** True once {@link mercuriusSubscription} was asked for: Fastify's WebSocket server is then paced (O5). */
  private mercurius = false;

  constructor(
    private readonly verifier: TokenVerifier,
    private readonly contexts: KeycardContexts,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly events: DecisionEvents,
    private readonly lifecycle: CarrierLifecycle,
    private readonly validators: TokenValidators,
    private readonly gateways: GatewayGuards,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {
    this.schemes = acceptedSchemes(options);
  }

  /**
   * With Mercurius subscriptions, every socket of Fastify's WebSocket servers (`@fastify/websocket`,
   * which Mercurius registers in its own plugin context) is paced from its opening (O5): a burst
   * written together with `connection_init` waits in Mercurius's own queue before `onConnect` runs.
   * A server not found here is found by the first `onConnect` (the connection object's `fastify`),
   * and that connection is paced from then on.
   */
  onApplicationBootstrap(): void {
    if (!this.mercurius) return;
    for (const server of fastifyWebSocketServers(this.adapterHost?.httpAdapter?.getInstance?.())) paceServerSockets(server);
  }

  /**
   * The app is shutting down: the refusal runs still counting on its connections are summarised now
   * (O5), not when those close, which can be after the process has gone (a client that stops
   * reading leaves its socket closing for 30 s).
   */
  onApplicationShutdown(): void {
    flushRuns(this.options.logger);
  }

  /**
   * graphql-ws server options for `GraphQLModule` (`subscriptions: { 'graphql-ws': … }`): the token
   * comes from `connectionParams` (`authorization: 'Bearer …'` or `token`) and is verified on
   * `connection_init`; a connection without a valid one is closed with 4401 (4403, 4400; 1013 when
   * the zone is unreachable) and the OAuth `error` as reason. No event is delivered once the
   * token's `exp` + clock tolerance has passed: the connection is closed with 4401 `invalid_token`.
   *
   * With `options.allowAnonymous`, a connection whose `connectionParams` carry no token at all opens
   * without an agent (catalogue N8): `@Public()` fields serve it, and every other field is refused
   * through the guard as a GraphQL error (`UNAUTHENTICATED`, the field's required `scope`; Q16), the
   * connection staying open. A token that is present but malformed (`token: 12345`), forged or
   * expired is still refused with 4401 (N5).
   *
   * @param hooks the app's own graphql-ws options; its hooks run after Keycard's.
   * @param options `allowAnonymous` (default `false`): let connections without any token open.
   * @example
   * ```ts
   * GraphQLModule.forRootAsync<ApolloDriverConfig>({
   *   driver: ApolloDriver,
   *   inject: [KeycardConnections],
   *   useFactory: (keycard: KeycardConnections) => ({
   *     autoSchemaFile: true,
   *     subscriptions: { 'graphql-ws': keycard.graphqlWs() },
   *   }),
   * })
   * ```
   */
  graphqlWs<T extends GraphQLWsHooks>(
    hooks: T = {} as T,
    options: { allowAnonymous?: boolean } = {},
  ): T & { onConnect: Hook; onNext: Hook; onClose: Hook } {
    const anonymous = options.allowAnonymous === true;
    const { onConnect, onNext, onClose } = hooks as {
      onConnect?: (ctx: GraphQLWsContext) => unknown;
      onNext?: (ctx: GraphQLWsContext, ...rest: unknown[]) => unknown;
      onClose?: (ctx: GraphQLWsContext, ...rest: unknown[]) => unknown;
    };
    return {
      ...hooks,
      onConnect: async (ctx: GraphQLWsContext) => {
        // graphql-ws reads the same `ws` socket: a burst of `subscribe` frames is paced as a gateway's (O5).
        paceMessages(ctx.extra?.socket);
        const agent = await this.openGraphQLWs(ctx, anonymous);
        if (agent === false) return false;
        if (agent !== undefined) {
          (ctx as { [CANCEL_EXPIRY]?: () => void })[CANCEL_EXPIRY] = this.atExpiry(agent, () => closeExpired(ctx.extra?.socket));
        }
        return onConnect ? onConnect(ctx) : true;
      },
      onNext: (ctx: GraphQLWsContext, ...rest: unknown[]) => {
        const agent = connectionOf(ctx)?.agent;
        if (agent !== undefined && this.expired(agent)) {
          // Closing first makes graphql-ws drop this event (it sends only on an open socket).
          closeExpired(ctx.extra?.socket);
          return undefined;
        }
        return onNext?.(ctx, ...rest);
      },
      onClose: (ctx: GraphQLWsContext, ...rest: unknown[]) => {
        (ctx as { [CANCEL_EXPIRY]?: () => void })[CANCEL_EXPIRY]?.();
        return onClose?.(ctx, ...rest);
      },
    };
  }

  /**
   * Mercurius `subscription` options for `GraphQLModule` with `MercuriusDriver`: the same rules as
   * {@link graphqlWs}, on Mercurius's `onConnect`. The token comes from the `connection_init`
   * payload (`authorization: 'Bearer …'` or `token`) and is verified there; a connection without a
   * valid one is closed with 4401 (4403, 4400; 1013 when the zone is unreachable) and the OAuth
   * `error` as reason, before any subscription starts. The connection's agent reaches the guard,
   * which judges each subscription field (`FORBIDDEN` with the `scope`; `@Public()` fields served).
   * Nothing is sent once the token's `exp` + clock tolerance has passed: the connection is closed
   * with 4401 `invalid_token`, at expiry even when no event is due.
   *
   * `allowAnonymous` as for {@link graphqlWs}. Without this hook, a Mercurius subscription serves
   * only `@Public()` fields (others get `UNAUTHENTICATED`, and one log line says how to enable it).
   *
   * Mercurius hands `onConnect` only the message; Keycard reads the socket from the connection
   * object Mercurius calls it on (`this`). Should a Mercurius version not offer it, every
   * connection is refused (`connection_error`, then closed) with an error log line: without the
   * socket its expiry could not be enforced.
   *
   * @param subscription the app's own Mercurius `subscription` options (`context`, `onDisconnect`,
   *   `pubsub`, …); its `onConnect` runs after Keycard's, for admitted connections only, and an
   *   object it returns is merged into the subscription context as usual.
   * @param options `allowAnonymous` (default `false`): let connections without any token open.
   * @example
   * ```ts
   * GraphQLModule.forRootAsync<MercuriusDriverConfig>({
   *   driver: MercuriusDriver,
   *   inject: [KeycardConnections],
   *   useFactory: (keycard: KeycardConnections) => ({
   *     autoSchemaFile: true,
   *     subscription: keycard.mercuriusSubscription(),
   *   }),
   * })
   * ```
   */
  mercuriusSubscription<T extends MercuriusSubscriptionHooks>(
    subscription: T = {} as T,
    options: { allowAnonymous?: boolean } = {},
  ): T & { onConnect: Hook } {
    const anonymous = options.allowAnonymous === true;
    const theirs = subscription.onConnect;
    this.mercurius = true;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const keycard = this;
    return {
      ...subscription,
      // A function, not an arrow: Mercurius calls it as a method of the connection (`this`).
      async onConnect(this: MercuriusConnection | undefined, data: { payload?: unknown } | undefined) {
        const socket = this?.socket;
        // Paced from its opening already (`onApplicationBootstrap`), or from now on, and the server's next sockets from theirs (O5).
        paceServerSockets(this?.fastify?.websocketServer);
        paceMessages(socket);
        if (typeof socket?.close !== 'function' || typeof socket.send !== 'function' || typeof socket.once !== 'function') {
          keycard.options.logger.error('Keycard refused a Mercurius subscription connection: Mercurius did not call onConnect on its connection, so the socket (needed to end it at token expiry) is unknown');
          return false;
        }
        // graphql-ws allows one `connection_init` (PROTOCOL.md) and closes 4429 on another; Mercurius would run
        // onConnect again (or for a `connectionInit` extension), letting another token change the principal (O12).
        if (initialised.has(this!)) {
          socket.close(4429, 'Too many initialisation requests');
          return false;
        }
        initialised.add(this!);
        forgetFailedSubscriptions(this!);
        // Frames that come while the connection is judged wait here, not in Mercurius's queue, which
        // it would handle back to back once onConnect is done (O5).
        const release = holdMessages(socket);
        try {
          return await keycard.openMercurius(this!, { data, anonymous, theirs });
        } finally {
          release();
        }
      },
    };
  }

  /**
   * Judges a Mercurius `connection_init` (see {@link mercuriusSubscription}), then runs the app's
   * own `onConnect` for an admitted connection.
   * @returns what Mercurius's `onConnect` returns: `false` when refused, else the subscription context's additions.
   */
  private async openMercurius(connection: MercuriusConnection, init: MercuriusInit): Promise<unknown> {
    const { data, anonymous, theirs } = init;
    const socket = connection.socket!;
    const carrier = { connectionParams: data?.payload as GraphQLWsContext['connectionParams'], extra: { socket, request: connection.context?.request?.raw } };
    const agent = await this.openGraphQLWs(carrier, anonymous);
    if (agent === false) return false;
    if (agent !== undefined) this.endMercuriusAtExpiry(agent, socket);
    // The app's refusal is Mercurius's own (`connection_error`, then closed); the expiry timer ends with the socket.
    const admitted: unknown = theirs === undefined ? true : await theirs.call(connection, data);
    if (!admitted) return admitted;
    return { ...(typeof admitted === 'object' ? admitted : {}), [MERCURIUS_CONNECTION]: carrier };
  }

  /**
   * A graphql-ws `connection_init` (Apollo's graphql-ws server, Mercurius): verifies the token of
   * `connectionParams`; a refusal closes the socket with the close code and the OAuth `error`.
   * Anonymous (no token at all): no agent, so the guard judges each field as a call without a token.
   * @returns the agent, now on `ctx` (`undefined` when anonymous), or `false` when refused.
   */
  private async openGraphQLWs(ctx: GraphQLWsContext & object, anonymous: boolean): Promise<AgentContext | undefined | false> {
    const request = ctx.extra?.request;
    try {
      const state = await this.open({ token: () => connectionParamsToken(ctx.connectionParams), request, call: 'graphql-ws connection', anonymous });
      // Closed while judged (an app's validator took its time): nothing is left to serve, to end at
      // expiry (a binding would stay until `exp`) or to hand to the app's own `onConnect`.
      if (closing(ctx.extra?.socket)) return false;
      setConnection(ctx, state);
      return state.agent;
    } catch (denial) {
      ctx.extra?.socket?.close(CLOSE_CODE[(denial as KeycardException).getStatus()] ?? 1011, closeReason(denial as KeycardException));
      return false;
    }
  }

  /**
   * Ends a Mercurius connection at its token's expiry: at the timer, and before any message is sent
   * past it (the timer may fire late; the clock may move). Mercurius sends every event with
   * `socket.send`: closing first makes `ws` drop it (it sends only on an open socket, and reports
   * the failure to Mercurius, which then ends the connection's subscriptions).
   */
  private endMercuriusAtExpiry(agent: AgentContext, socket: MercuriusSocket): void {
    socket.once('close', this.atExpiry(agent, () => closeExpired(socket)));
    const send = socket.send;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const keycard = this;
    socket.send = function (this: unknown, ...args: unknown[]) {
      if (keycard.expired(agent)) closeExpired(socket);
      return send.apply(this, args);
    };
  }

  /**
   * Makes a Nest WebSocket adapter (`WsAdapter` of `@nestjs/platform-ws`, `IoAdapter` of
   * `@nestjs/platform-socket.io`, or a subclass) verify every connection at its handshake, before
   * any gateway code (`handleConnection`, message handlers) runs. `ws`: the `Authorization` header
   * of the upgrade request; refused with HTTP 401/403 + the challenge. socket.io: `auth.token` or
   * the `Authorization` header; refused with a `connect_error` whose `data` is
   * `{ error, error_description, scope? }`.
   *
   * A connection ends when its token's `exp` + clock tolerance has passed, even when no message is
   * due, so nothing the server pushes reaches it afterwards: `ws` closes it with 4401
   * `invalid_token` (as graphql-ws does); socket.io first emits an `exception` event
   * `{ status: 'error', error: 'invalid_token', error_description }` (the shape of a refused
   * message), then disconnects it.
   *
   * With `allowAnonymous`, a connection without any token opens (a malformed or invalid token is
   * still refused): `@Public()` handlers serve it and every other message is refused with an
   * `exception` event. Such a connection has no token, so no expiry.
   *
   * socket.io `connectionStateRecovery` (catalogue O6–O8, Q21): each session is bound to the
   * principal that opened it. A recovered socket is judged like a handshake (Keycard sets
   * `skipMiddlewares: false`; a socket the middleware still skipped is re-judged on `connection`)
   * and must present a valid token of that principal: it then gets its rooms and missed packets
   * back and ends at the new token's expiry. Otherwise: `connect_error` (none, or `invalid_request`
   * for another principal), and nothing of the session reaches it.
   *
   * @throws Error (when the gateway's server is created) if recovery is on but its adapter has no
   *   session support Keycard can bind to.
   * @example
   * ```ts
   * const app = await NestFactory.create(AppModule);
   * app.useWebSocketAdapter(app.get(KeycardConnections).guard(new IoAdapter(app)));
   * ```
   */
  guard<A extends WebSocketAdapter>(adapter: A, options: { allowAnonymous?: boolean } = {}): A {
    const create = adapter.create.bind(adapter);
    const anonymous = options.allowAnonymous === true;
    const verifyClient = anonymous ? this.verifyClientOrAnonymous : this.verifyClient;
    const middleware = anonymous ? this.socketIoMiddlewareOrAnonymous : this.socketIoMiddleware;
    adapter.create = (port: number, serverOptions?: Record<string, unknown>) => {
      const theirs = serverOptions?.verifyClient as ((info: { req: IncomingMessage }, done: VerifyDone) => unknown) | undefined;
      // The gateway's own `verifyClient` (sync or async form, if any) runs once Keycard admitted the handshake.
      // Always a function of two declared parameters: `ws` picks the async form by `verifyClient.length`,
      // which a field read through an APM instrument's Proxy need not keep.
      const both = theirs === undefined ? (info: { req: IncomingMessage }, done: VerifyDone) => verifyClient(info, done) : (info: { req: IncomingMessage }, done: VerifyDone) =>
        verifyClient(info, (ok, ...refusal) => {
          if (!ok) done(ok, ...refusal);
          else if (theirs.length >= 2) theirs(info, done);
          else done(Boolean(theirs(info, done)));
        });
      const server = create(port, { ...serverOptions, verifyClient: both }) as Record<string, unknown>;
      const on = server.on as ((event: string, fn: (client: object, request: IncomingMessage) => void) => void) | undefined;
      if (typeof server.use === 'function') {
        bindRecoveredSessions(server);
        (server.use as (mw: unknown) => void)(middleware);
        // The engine's first request is what the handshake and every message are judged against (socket.request).
        engineOf(server)?.on('connection', (connection) => {
          rememberLocalAddress(connection.request);
          paceEngineIoConnection(connection); // polling payloads and WebSocket reads alike (O5)
        });
        // Registered before Nest's own listener: a recovered socket is judged before any handler sees it.
        on?.call(server, 'connection', (socket) => {
          this.gateways.claim(socket);
          this.openSocketIo(socket as SocketIoSocket, anonymous);
        });
      } else if (typeof on === 'function') {
        // Registered before Nest's own listener: the client carries its agent before any handler sees it.
        // A DPoP nonce renewed while the upgrade was judged goes on its 101 (RFC 9449 §8.2).
        on.call(server, 'headers', (headers, request) => (headers as string[]).push(...takeOpeningNonceHeaders(request)));
        on.call(server, 'connection', (client, request) => {
          this.gateways.claim(client);
          paceMessages(client); // a burst is handled a bounded batch per turn of the event loop (O5)
          const state = connectionOf(request);
          if (state === undefined) return;
          setConnection(client, state);
          if (state.agent !== undefined) (client as WsClient).once('close', this.atExpiry(state.agent, () => closeExpired(client as WsClient)));
        });
      }
      return server;
    };
    return adapter;
  }

  /** `ws` `verifyClient` (async form): refuses the upgrade with the HTTP status and challenge. */
  private readonly verifyClient = (info: { req: IncomingMessage }, done: VerifyDone, anonymous = false): void => {
    const token = () => extractBearerToken(info.req, this.schemes);
    this.open({ token, request: info.req, call: 'ws connection', anonymous, tokenInRequest: true }).then(
      (state) => {
        setConnection(info.req, state);
        done(true);
      },
      (denial: KeycardException) => {
        done(false, denial.getStatus(), closeReason(denial), this.upgradeRefusalHeaders(info.req, denial));
      },
    );
  };

  private readonly verifyClientOrAnonymous = (info: { req: IncomingMessage }, done: VerifyDone) => this.verifyClient(info, done, true);

  /**
   * socket.io middleware: the handshake is refused with `connect_error` `{ message, data }`. A
   * socket recovered from a session (connection-state recovery) is judged the same way, and must be
   * the session's principal (O6–O8): else `connect_error` `invalid_request`.
   */
  private readonly socketIoMiddleware = (socket: SocketIoSocket, next: NextFn, anonymous = false): void => {
    this.open(this.socketIoOpening(socket, anonymous)).then(
      (state) => {
        setConnection(socket, state);
        next();
      },
      (denial: KeycardException) => next(Object.assign(new Error(closeReason(denial)), { data: errorFields(denial) })),
    );
  };

  private readonly socketIoMiddlewareOrAnonymous = (socket: SocketIoSocket, next: NextFn) =>
    this.socketIoMiddleware(socket, next, true);

  /**
   * How a socket.io socket is judged: its handshake token; for a recovered socket, also its
   * session's principal (`allowAnonymous` only lets a session that was anonymous resume without a
   * token). A recovered socket whose session Keycard did not see restored is refused.
   */
  private socketIoOpening(socket: SocketIoSocket, anonymous: boolean): Opening {
    const opening: Opening = {
      token: () => handshakeToken(socket, this.schemes), request: socket.request, call: 'socket.io connection', anonymous,
      tokenInRequest: handshakeTokenInRequest(socket), transport: socket.conn,
    };
    if (socket.recovered !== true) return opening;
    const recovery = recoveryOf(socket);
    if (recovery === undefined) {
      this.options.logger.error('Keycard refused a recovered socket.io connection: its session was restored by an adapter Keycard did not bind (was the adapter replaced after KeycardConnections.guard()?)');
      return { ...opening, token: () => { throw new InvalidRequestException('session_principal_mismatch'); } };
    }
    return { ...opening, anonymous: anonymous && recovery.owner === null, owner: recovery.owner };
  }

  /**
   * A socket.io socket is connected (before Nest's or the app's handlers run). A recovered socket
   * the middleware did not judge (socket.io skipped it: `skipMiddlewares`) is re-judged here (Q21
   * c), out of its rooms meanwhile; the packets it missed follow once it is admitted. Then it ends
   * at its token's expiry.
   */
  private openSocketIo(socket: SocketIoSocket, anonymous: boolean): void {
    if (socket.recovered !== true || connectionOf(socket) !== undefined) {
      deliverMissed(socket);
      this.endSocketIoAtExpiry(socket);
      return;
    }
    const rejoin = withdraw(socket);
    this.open(this.socketIoOpening(socket, anonymous)).then(
      (state) => {
        if (!socket.connected) return;
        setConnection(socket, state);
        rejoin();
        deliverMissed(socket);
        this.endSocketIoAtExpiry(socket);
      },
      (denial: KeycardException) => endSocketIo(socket, denial),
    );
  }

  /**
   * The state of a connection: the agent of its token and the token (for `@Grant()` on its
   * messages), none for a connection without any token when `anonymous`; or the refusal (logged
   * with the reason, never the token). Both are published as decision events (`call.carrier` names
   * the connection; there is no `ExecutionContext` yet), so the audit log records them: a flood of
   * forged handshakes shows there.
   */
  private async open(opening: Opening): Promise<ConnectionState> {
    const { token, request, call, anonymous, owner, tokenInRequest } = opening;
    const started = performance.now();
    let state: ConnectionState = { request };
    try {
      const resource = this.contexts.resourceFor(request);
      const found = token();
      if (found === undefined && !anonymous) throw new MissingCredentialsException();
      if (found !== undefined) {
        const opening: ConnectionOpening = { name: call, resource, token: found, request: tokenInRequest === true ? request : undefined };
        state = openedConnection(await this.validated(await this.verifier.verify(found, resource), opening), found, request);
      }
      // Another principal's session is refused, and left to its owner (Q18).
      if (owner !== undefined && !ownsSession(state.agent, owner)) throw new InvalidRequestException('session_principal_mismatch');
    } catch (error) {
      const denial = this.contexts.toDenial(error);
      this.logRefusedOpening(opening, denial);
      this.events.opened(call, { ...refusalOutcome(denial, undefined), started, traceparent: request?.headers.traceparent });
      throw denial;
    }
    if (opening.transport !== undefined) endRuns(opening.transport); // an opening admitted: the transport's refusal runs end
    this.events.opened(call, { status: 101, agent: state.agent, started, traceparent: request?.headers.traceparent });
    return state;
  }

  /**
   * Logs a refused opening with its reason (never the token); on a shared transport (socket.io's
   * engine.io connection) the first of a run of the same refusal, then one `repeated=<n>` line (O5).
   */
  private logRefusedOpening({ call, transport }: Opening, denial: KeycardException): void {
    const { logger } = this.options;
    if (transport !== undefined && !startsRun({ carrier: transport, handler: call, denial, agent: undefined, describe: () => call, logger })) return;
    logAtLevel(logger, denialLogLevel(denial), denialLine(call, denial));
  }

  /** The app's token validators judge a connection's token when it opens, as they judge every call. */
  private async validated(agent: AgentContext, opening: ConnectionOpening): Promise<AgentContext> {
    await this.validators.run(agent, undefined, opening);
    return agent;
  }

  /** The challenge of a refused `ws` upgrade: as on an HTTP route, with the DPoP challenge when DPoP is on (RFC 9449 §7.1). */
  private upgradeRefusalHeaders(request: IncomingMessage, denial: KeycardException): Record<string, string> {
    const headers = denial.headers(this.resourceOrUndefined(request)?.metadataUrl, this.options.realm);
    const { dpop } = this.options;
    return dpop === undefined ? headers : { ...withDpopChallenge(headers, { denial, scheme: authorizationScheme(request), dpop }) };
  }

  private resourceOrUndefined(request: IncomingMessage) {
    try {
      return this.contexts.resourceFor(request);
    } catch {
      return undefined;
    }
  }

  private expired(agent: AgentContext): boolean {
    return this.lifecycle.expired(agent);
  }

  /** socket.io: the socket ends at its token's expiry (see {@link endSocketIo}). */
  private endSocketIoAtExpiry(socket: SocketIoSocket): void {
    const agent = connectionOf(socket)?.agent;
    // Anonymous connections carry no token, so nothing expires.
    if (agent === undefined) return;
    socket.once('disconnect', this.atExpiry(agent, (reason) => endSocketIo(socket, denialOf(reason))));
  }

  /**
   * Calls `end` once the agent's token has expired, through the one carrier lifecycle
   * ({@link CarrierLifecycle}), so a connection ends even when no message or event is due.
   * @returns cancels it: call it when the connection closes first, so nothing stays pending.
   */
  private atExpiry(agent: AgentContext, end: (reason: CarrierEndReason) => void): () => void {
    const binding = this.lifecycle.bind({ agent, end });
    return () => binding.close();
  }
}

/** socket.io: the client learns why (the `exception` event of a refused message), then the connection ends. */
function endSocketIo(socket: SocketIoSocket, denial: KeycardException): void {
  sendToSocket(socket, 'exception', { status: 'error', ...errorFields(denial) });
  socket.disconnect(true);
}

/** The parts of an engine.io server used here: its `connection` event carries the connection's first HTTP request. */
interface EngineIoServer {
  on(event: 'connection', listener: (connection: EngineIoConnection) => void): unknown;
}

/** An engine.io connection: its first request, and its transport (`socket`: the `ws` WebSocket of the WebSocket transport). */

/** The engine.io server under a socket.io `Server` (`engine`) or `Namespace` (`server.engine`). */
function engineOf(server: Record<string, unknown>): EngineIoServer | undefined {
  const engine = (server.engine ?? (server.server as { engine?: unknown } | undefined)?.engine) as EngineIoServer | undefined;
  return typeof engine?.on === 'function' ? engine : undefined;
}

/**
 * The `ws` servers of a Fastify instance and its plugin contexts: `@fastify/websocket` decorates the
 * context that registers it (Mercurius's subscription plugin, encapsulated). Fastify keeps a
 * context's children under a symbol it does not export (`fastify.children`), found by its
 * description; none found (another Fastify, another adapter) is no error: `onConnect` finds it.
 */
function fastifyWebSocketServers(instance: unknown): Set<unknown> {
  const servers = new Set<unknown>();
  const visit = (context: unknown, depth: number): void => {
    if (typeof context !== 'object' || context === null || depth > 8) return;
    const server = (context as FastifyWithWebSockets).websocketServer;
    if (server !== undefined) servers.add(server);
    const children = Object.getOwnPropertySymbols(context).find((key) => key.description === 'fastify.children');
    const list = children === undefined ? undefined : (context as Record<symbol, unknown>)[children];
    if (Array.isArray(list)) for (const child of list) visit(child, depth + 1);
  };
  visit(instance, 0);
  return servers;
}

/** True when a `ws` socket is closing or closed (`readyState` 2 or 3); a socket of unknown shape is not. */
function closing(socket: unknown): boolean {
  const state = (socket as { readyState?: unknown } | undefined)?.readyState;
  return typeof state === 'number' && state >= 2;
}

/** Ends a connection whose token expired, as graphql-ws ends an unauthorized one. */
function closeExpired(socket: ClosableSocket | undefined): void {
  socket?.close(4401, 'invalid_token');
}

/** The close reason / `connect_error` message: the OAuth `error` only (`unauthorized` without credentials). */
function closeReason(denial: KeycardException): string {
  return errorFields(denial).error ?? 'unauthorized';
}
