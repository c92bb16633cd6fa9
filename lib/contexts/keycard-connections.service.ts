import { Inject, Injectable, type WebSocketAdapter } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { AuditTrail } from '../resource-server/audit-trail.js';
import { extractBearerToken } from '../resource-server/bearer-token.extractor.js';
import { InvalidTokenException, type KeycardException, MissingCredentialsException } from '../resource-server/keycard.exceptions.js';
import { rememberLocalAddress } from '../resource-server/local-address.js';
import { TokenVerifier } from '../resource-server/token-verifier.js';
import { connectionOf, setConnection } from './connection-state.js';
import { GatewayGuards } from './gateway-guards.js';
import { connectionParamsToken, MERCURIUS_CONNECTION } from './graphql.context.js';
import { KeycardContexts } from './keycard-contexts.js';
import { errorFields, handshakeToken } from './ws.context.js';

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
interface SocketIoSocket {
  emit(event: string, data: unknown): unknown;
  disconnect(close: boolean): unknown;
  once(event: 'disconnect', listener: () => void): unknown;
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

/** setTimeout's longest delay (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Verifies WebSocket connections when they open, through the guard's own verification path (one
 * cache, one set of rules), so a connection without a valid token never reaches a resolver or a
 * gateway (catalogue N5, N6), unless anonymous connections are allowed: then only `@Public()` ones (N8). The guard then judges every message or subscription again (expiry,
 * scopes) with the agent found here.
 * @publicApi
 */
@Injectable()
export class KeycardConnections {
  constructor(
    private readonly verifier: TokenVerifier,
    private readonly contexts: KeycardContexts,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly audit: AuditTrail,
    private readonly gateways: GatewayGuards,
  ) {}

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
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const keycard = this;
    return {
      ...subscription,
      // A function, not an arrow: Mercurius calls it as a method of the connection (`this`).
      async onConnect(this: MercuriusConnection | undefined, data: { payload?: unknown } | undefined) {
        const socket = this?.socket;
        if (typeof socket?.close !== 'function' || typeof socket.send !== 'function' || typeof socket.once !== 'function') {
          keycard.options.logger.error('Keycard refused a Mercurius subscription connection: Mercurius did not call onConnect on its connection, so the socket (needed to end it at token expiry) is unknown');
          return false;
        }
        const carrier = { connectionParams: data?.payload as GraphQLWsContext['connectionParams'], extra: { socket, request: this!.context?.request?.raw } };
        const agent = await keycard.openGraphQLWs(carrier, anonymous);
        if (agent === false) return false;
        if (agent !== undefined) keycard.endMercuriusAtExpiry(agent, socket);
        // The app's refusal is Mercurius's own (`connection_error`, then closed); the expiry timer ends with the socket.
        const admitted: unknown = theirs === undefined ? true : await theirs.call(this, data);
        if (!admitted) return admitted;
        return { ...(typeof admitted === 'object' ? admitted : {}), [MERCURIUS_CONNECTION]: carrier };
      },
    };
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
      const agent = await this.open(() => connectionParamsToken(ctx.connectionParams), request, 'graphql-ws connection', anonymous);
      if (agent !== undefined) setConnection(ctx, { agent, request });
      return agent;
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
      const both = theirs === undefined ? verifyClient : (info: { req: IncomingMessage }, done: VerifyDone) =>
        verifyClient(info, (ok, ...refusal) => {
          if (!ok) done(ok, ...refusal);
          else if (theirs.length >= 2) theirs(info, done);
          else done(Boolean(theirs(info, done)));
        });
      const server = create(port, { ...serverOptions, verifyClient: both }) as Record<string, unknown>;
      const on = server.on as ((event: string, fn: (client: object, request: IncomingMessage) => void) => void) | undefined;
      if (typeof server.use === 'function') {
        (server.use as (mw: unknown) => void)(middleware);
        // The engine's first request is what the handshake and every message are judged against (socket.request).
        engineOf(server)?.on('connection', (connection) => rememberLocalAddress(connection.request));
        on?.call(server, 'connection', (socket) => {
          this.gateways.claim(socket);
          this.endSocketIoAtExpiry(socket as SocketIoSocket);
        });
      } else if (typeof on === 'function') {
        // Registered before Nest's own listener: the client carries its agent before any handler sees it.
        on.call(server, 'connection', (client, request) => {
          this.gateways.claim(client);
          const state = connectionOf(request);
          if (state === undefined) return;
          setConnection(client, state);
          (client as WsClient).once('close', this.atExpiry(state.agent, () => closeExpired(client as WsClient)));
        });
      }
      return server;
    };
    return adapter;
  }

  /** `ws` `verifyClient` (async form): refuses the upgrade with the HTTP status and challenge. */
  private readonly verifyClient = (info: { req: IncomingMessage }, done: VerifyDone, anonymous = false): void => {
    this.open(() => extractBearerToken(info.req), info.req, 'ws connection', anonymous).then(
      (agent) => {
        if (agent !== undefined) setConnection(info.req, { agent, request: info.req });
        done(true);
      },
      (denial: KeycardException) => {
        const resource = this.resourceOrUndefined(info.req);
        done(false, denial.getStatus(), closeReason(denial), denial.headers(resource?.metadataUrl, this.options.realm));
      },
    );
  };

  private readonly verifyClientOrAnonymous = (info: { req: IncomingMessage }, done: VerifyDone) => this.verifyClient(info, done, true);

  /** socket.io middleware: the handshake is refused with `connect_error` `{ message, data }`. */
  private readonly socketIoMiddleware = (socket: { request: IncomingMessage }, next: NextFn, anonymous = false): void => {
    this.open(() => handshakeToken(socket), socket.request, 'socket.io connection', anonymous).then(
      (agent) => {
        if (agent !== undefined) setConnection(socket, { agent, request: socket.request });
        next();
      },
      (denial: KeycardException) => next(Object.assign(new Error(closeReason(denial)), { data: errorFields(denial) })),
    );
  };

  private readonly socketIoMiddlewareOrAnonymous = (socket: { request: IncomingMessage }, next: NextFn) =>
    this.socketIoMiddleware(socket, next, true);

  /**
   * The agent of a connection's token, or the refusal (logged with the reason, never the token);
   * `undefined` for a connection without any token when `anonymous`. With `auditLog`, both are
   * audited ({@link AuditTrail.recordConnection}): a flood of forged handshakes shows there.
   */
  private async open(token: () => string | undefined, request: IncomingMessage | undefined, call: string, anonymous = false): Promise<AgentContext | undefined> {
    const started = performance.now();
    let agent: AgentContext | undefined;
    try {
      const resource = this.contexts.resourceFor(request);
      const found = token();
      if (found === undefined && !anonymous) throw new MissingCredentialsException();
      agent = found === undefined ? undefined : await this.verifier.verify(found, resource);
    } catch (error) {
      const denial = this.contexts.toDenial(error);
      const line = `denied ${call} status=${denial.getStatus()} reason=${denial.code}`;
      if (denial.getStatus() >= 500) this.options.logger.error(line);
      else this.options.logger.warn(line);
      if (this.options.auditLog) this.audit.recordConnection(call, started, undefined, denial.getStatus(), denial.code);
      throw denial;
    }
    if (this.options.auditLog) this.audit.recordConnection(call, started, agent);
    return agent;
  }

  private resourceOrUndefined(request: IncomingMessage) {
    try {
      return this.contexts.resourceFor(request);
    } catch {
      return undefined;
    }
  }

  private expired(agent: AgentContext): boolean {
    return this.contexts.msUntilExpiry(agent) < 0;
  }

  /** socket.io: the client learns why (the `exception` event of a refused message), then the connection ends. */
  private endSocketIoAtExpiry(socket: SocketIoSocket): void {
    const agent = connectionOf(socket)?.agent;
    // Anonymous connections carry no token, so nothing expires.
    if (agent === undefined) return;
    const end = () => {
      socket.emit('exception', { status: 'error', ...errorFields(new InvalidTokenException('expired')) });
      socket.disconnect(true);
    };
    socket.once('disconnect', this.atExpiry(agent, end));
  }

  /**
   * Calls `end` once the agent's token has expired (`exp` + clock tolerance, by the module's clock),
   * so a connection ends even when no message or event is due. One unref'd timer: an open
   * connection alone never keeps the process alive. It re-arms when it fires early (a lifetime
   * beyond setTimeout's maximum, a clock that moved).
   * @returns cancels it: call it when the connection closes first, so nothing stays pending.
   */
  private atExpiry(agent: AgentContext, end: () => void): () => void {
    let timer: NodeJS.Timeout;
    const arm = () => {
      const delay = this.contexts.msUntilExpiry(agent);
      timer = setTimeout(() => (this.expired(agent) ? end() : arm()), Math.max(0, Math.min(delay, MAX_TIMER_MS)));
      timer.unref();
    };
    arm();
    return () => clearTimeout(timer);
  }
}

/** The parts of an engine.io server used here: its `connection` event carries the connection's first HTTP request. */
interface EngineIoServer {
  on(event: 'connection', listener: (connection: { request: IncomingMessage }) => void): unknown;
}

/** The engine.io server under a socket.io `Server` (`engine`) or `Namespace` (`server.engine`). */
function engineOf(server: Record<string, unknown>): EngineIoServer | undefined {
  const engine = (server.engine ?? (server.server as { engine?: unknown } | undefined)?.engine) as EngineIoServer | undefined;
  return typeof engine?.on === 'function' ? engine : undefined;
}

/** Ends a connection whose token expired, as graphql-ws ends an unauthorized one. */
function closeExpired(socket: ClosableSocket | undefined): void {
  socket?.close(4401, 'invalid_token');
}

/** The close reason / `connect_error` message: the OAuth `error` only (`unauthorized` without credentials). */
function closeReason(denial: KeycardException): string {
  return errorFields(denial).error ?? 'unauthorized';
}
