import type { ExecutionContext, HttpServer } from '@nestjs/common';
import { IncomingMessage, type ServerResponse } from 'node:http';
import { parseBearerCredentials } from '../resource-server/bearer-token.extractor.js';
import { InvalidTokenException, type KeycardException, MissingCredentialsException } from '../resource-server/keycard.exceptions.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import type { CallKind, Carrier, Refusal } from './call-kind.interface.js';
import { connectionOf, openedAnonymously } from './connection-state.js';
import { rawResponseOf, writeChallenge } from './http.context.js';
import { HttpTokenReader } from './http-token-reader.js';

/**
 * The context value a resolver receives (third resolver argument), as Nest's drivers build it:
 * Apollo puts the HTTP request (or, for graphql-ws, the connection context) in `req`; Mercurius
 * hands the Fastify `reply`.
 */
interface GraphQLContextValue {
  req?: Carrier;
  res?: object;
  reply?: { request?: Carrier; raw?: ServerResponse };
  /** Set by Mercurius in a subscription's context (the `connection_init` payload): never over HTTP. */
  _connectionInit?: unknown;
  [MERCURIUS_CONNECTION]?: Carrier;
}

/**
 * Where `KeycardConnections.mercuriusSubscription()` puts a Mercurius connection's carrier (shaped
 * like a graphql-ws `Context`) in the context Mercurius gives that connection's subscriptions. A
 * symbol: no client input can set it.
 */
export const MERCURIUS_CONNECTION = Symbol('keycard.mercurius-connection');

/** The parts of graphql-js's `GraphQLResolveInfo` read here (fourth resolver argument). */
interface ResolveInfo {
  fieldName?: string;
  parentType?: { name?: string };
  path?: { prev?: unknown };
  operation?: { operation?: string; name?: { value?: string }; selectionSet?: SelectionSet };
  fragments?: Readonly<Record<string, { selectionSet?: SelectionSet } | undefined>>;
  /** The field's nodes; their `loc.source.body` is the whole document. */
  fieldNodes?: readonly { loc?: { source?: { body?: string } } }[];
}

/** graphql-js AST selections, read by shape: fields, fragment spreads and inline fragments. */
interface SelectionSet {
  selections?: readonly Selection[];
}

interface Selection {
  kind?: string;
  name?: { value?: string };
  alias?: { value?: string };
  selectionSet?: SelectionSet;
}

/** A graphql-ws connection context (`graphql-ws` `Context`), as Apollo hands it to subscription resolvers. */
interface SocketContext {
  connectionParams?: Readonly<Record<string, unknown>>;
  extra?: { request?: IncomingMessage };
}

const EMPTY: Carrier = Object.freeze({});

/** A GraphQL server whose subscription connections can bypass the module's connection hooks. */
export type UnguardedServer = 'mercurius' | 'graphql-ws';

/**
 * graphql-js calls resolvers with (root, args, context, info), federation reference resolvers
 * (`@ResolveReference()`) with (reference, context, info): three arguments, told apart by count,
 * as `GqlExecutionContext` does.
 */
function isReferenceCall(args: readonly unknown[]): boolean {
  return args.length === 3;
}

/** The context value of a resolver call (see {@link isReferenceCall}). */
function contextValueOf(context: ExecutionContext): GraphQLContextValue | undefined {
  const args = context.getArgs();
  return (isReferenceCall(args) ? args[1] : args[2]) as GraphQLContextValue | undefined;
}

/** The `GraphQLResolveInfo` of a resolver call (see {@link isReferenceCall}). */
function resolveInfoOf(context: ExecutionContext): ResolveInfo | undefined {
  const args = context.getArgs();
  return (isReferenceCall(args) ? args[2] : args[3]) as ResolveInfo | undefined;
}

/**
 * An object of this resolver call's own, the same for every guard, interceptor and parameter
 * decorator of the call (graphql-js builds one `GraphQLResolveInfo` per field it resolves; a
 * reference resolver gets its own representation), where the fields of one operation share their
 * request: what a call keeps for itself is kept here.
 */
export function graphqlCallKey(context: ExecutionContext): object | undefined {
  const args = context.getArgs();
  // The entities of one `_entities` field share its info: each representation is the call's own.
  return isReferenceCall(args) ? (args[0] as object | undefined) : resolveInfoOf(context);
}

/**
 * The entity lookup a federation reference resolver call belongs to: one `_entities` field calls
 * the reference resolver once per representation, all with that field's `GraphQLResolveInfo`.
 * Undefined for any other resolver call.
 */
export function entityLookupOf(context: ExecutionContext): object | undefined {
  const args = context.getArgs();
  return isReferenceCall(args) ? (args[2] as object | undefined) : undefined;
}

/**
 * Whether a resolver call resolves a field below the operation's root fields (a `@ResolveField()`
 * judged with `fieldResolverEnhancers: ['guards']`, once per item of a list): a rate limit counts
 * the operation's root fields, not these.
 */
export function isNestedField(context: ExecutionContext): boolean {
  return resolveInfoOf(context)?.path?.prev !== undefined;
}

/**
 * The carrier of a resolver call: the HTTP request, or the graphql-ws connection context (Apollo's,
 * or the one `KeycardConnections.mercuriusSubscription()` made). A Mercurius subscription whose
 * connection did not pass that hook is its own carrier, without a token (see `isUnguardedSubscription`).
 */
export function graphqlCarrier(context: ExecutionContext): Carrier {
  const value = contextValueOf(context);
  if (value === undefined || value === null) return EMPTY;
  const connection = value[MERCURIUS_CONNECTION];
  if (connection !== undefined) return connection;
  if (isUnguardedSubscription(value)) return value;
  return value.req ?? value.reply?.request ?? value;
}

/**
 * True when the carrier is a graphql-ws connection context or an unguarded Mercurius subscription.
 * A Node HTTP request (Apollo over Express: the common case) is told apart first, by its class:
 * Express gives each request a hidden class of its own, so every property it lacks is looked up
 * along its whole prototype chain, each time (about 3 µs a call on the cold path; issue 24).
 */
function isSocketContext(carrier: Carrier): boolean {
  if (carrier instanceof IncomingMessage) return false;
  return 'connectionParams' in carrier || typeof (carrier as SocketContext).extra === 'object' || isUnguardedSubscription(carrier);
}

/**
 * A Mercurius subscription (or `fullWsTransport` operation) over a connection Keycard did not open:
 * Mercurius marks its context with `_connectionInit`, and its `reply` is no Fastify reply (no `raw`).
 * Its token cannot be verified at `connection_init` nor its connection ended at expiry (the upgrade
 * request's headers, which Mercurius also fills from the payload, would be judged once, then events
 * flow past `exp`), so it carries no token: only `@Public()` fields serve it.
 */
function isUnguardedSubscription(value: object): boolean {
  const { reply } = value as GraphQLContextValue;
  return '_connectionInit' in value || (reply !== undefined && reply !== null && reply.raw === undefined && 'pubsub' in value);
}

/**
 * GraphQL resolvers (Apollo on Express, Mercurius on Fastify; queries, mutations, subscriptions).
 * Read by shape from the resolver arguments, as `GqlExecutionContext` does, so `@nestjs/graphql`
 * is never imported. Refusals follow catalogue Q16: a GraphQL error whose `extensions` carry
 * `code` (`UNAUTHENTICATED` / `FORBIDDEN`), the OAuth `error` and the required `scope`; over HTTP
 * the response carries the challenge, and its status is 401/403 when every root field was refused.
 */
export class GraphQLCallKind implements CallKind {
  readonly name = 'graphql';
  readonly sharedCarrier = true;

  accepts(type: string): boolean {
    return type === 'graphql';
  }

  /**
   * @param unguarded called when a subscription reaches a protected field over a connection the
   *   module's hooks did not open (says how to enable them): `mercurius` without
   *   `KeycardConnections.mercuriusSubscription()`, `graphql-ws` (Apollo) without `graphqlWs()`.
   */
  constructor(
    private readonly adapter: () => HttpServer,
    private readonly unguarded: (server: UnguardedServer) => void = () => undefined,
    /** Reads an HTTP request's `Authorization` with the accepted schemes (`DPoP` when it is on); connections read Bearer only. */
    private readonly tokens = new HttpTokenReader(),
  ) {}

  carrier(context: ExecutionContext): Carrier {
    return graphqlCarrier(context);
  }

  // Here and in `token`: an HTTP request (the common case) is told apart with one look at its shape.
  httpRequest(_context: ExecutionContext, carrier: Carrier): IncomingMessage | undefined {
    if (carrier instanceof IncomingMessage) return carrier; // no `raw` to look for (see isSocketContext)
    if (carrier === EMPTY) return undefined;
    if (!isSocketContext(carrier)) return rawRequestOf(carrier);
    if (!isUnguardedSubscription(carrier)) return (carrier as SocketContext).extra?.request;
    const upgrade = (carrier as { request?: object }).request;
    return upgrade === undefined ? undefined : rawRequestOf(upgrade);
  }

  httpResponse(context: ExecutionContext, carrier: Carrier): ServerResponse | undefined {
    const response = this.adapterResponse(context, carrier);
    return response === undefined ? undefined : rawResponseOf(response);
  }

  /** Express's `res` or Fastify's `reply` of an operation over HTTP. */
  private adapterResponse(context: ExecutionContext, carrier: Carrier): object | undefined {
    if (carrier === EMPTY || isSocketContext(carrier)) return undefined;
    const value = contextValueOf(context);
    return value?.res ?? value?.reply ?? (carrier as { res?: object }).res;
  }

  isConnection(carrier: Carrier): boolean {
    return isSocketContext(carrier);
  }

  connectionAgent(carrier: Carrier) {
    return connectionOf(carrier)?.agent;
  }

  openedAnonymously(carrier: Carrier): boolean {
    return openedAnonymously(carrier);
  }

  /**
   * A graphql-ws connection Keycard did not open (no `graphqlWs()` / `mercuriusSubscription()`)
   * has no token the guard may use: it was never verified at `connection_init` and nothing would
   * end it at expiry, so only `@Public()` fields serve it (fail closed, one log line naming the fix).
   */
  token(_context: ExecutionContext, carrier: Carrier): string | undefined {
    if (carrier instanceof IncomingMessage) return this.tokens.read(carrier);
    if (carrier === EMPTY) return undefined;
    if (!isSocketContext(carrier)) return this.tokens.read(rawRequestOf(carrier));
    if (isUnguardedSubscription(carrier)) this.unguarded('mercurius');
    else if (connectionOf(carrier) === undefined) this.unguarded('graphql-ws');
    else return connectionParamsToken((carrier as SocketContext).connectionParams);
    return undefined;
  }

  refuse(refusal: Refusal): Error {
    const { denial, context, carrier, requiredScopes } = refusal;
    const response = this.adapterResponse(context, carrier);
    if (response !== undefined) {
      // Read here only: a graphql-ws refusal has no response, and its challenge is never built.
      if (answersFor(rawResponseOf(response), denial.getStatus())) writeChallenge(this.adapter(), response, rawRequestOf(carrier), refusal.headers);
      // A batch (array body) answers several operations in one response: one operation's refusals
      // never decide its status.
      // Nor does an entity lookup's: the other entities of its `_entities` field may have been served.
      if (!Array.isArray((carrier as { body?: unknown }).body) && entityLookupOf(context) === undefined) {
        statusWhenNothingRan(rawResponseOf(response), resolveInfoOf(context), denial.getStatus());
      }
    }
    return unlocatedInLargeDocument(asGraphQLError(denial, requiredScopes), resolveInfoOf(context));
  }

  describe(context: ExecutionContext): string {
    const info = resolveInfoOf(context);
    const operation = info?.operation;
    return `graphql ${operation?.operation ?? 'operation'} ${operation?.name?.value ?? 'anonymous'}.${info?.fieldName ?? '?'}`;
  }

  /** The operation (type and name) an HTTP request carries; `graphql batch` for several (an array body). */
  describeRequest(context: ExecutionContext, carrier: Carrier): string {
    if (Array.isArray((carrier as { body?: unknown }).body)) return 'graphql batch';
    const operation = resolveInfoOf(context)?.operation;
    return `graphql ${operation?.operation ?? 'operation'} ${operation?.name?.value ?? 'anonymous'}`;
  }

  /** The field's schema coordinate (`Query.orders`, `Order.secret`): aliases are the client's, the schema's names are bounded. */
  part(context: ExecutionContext): string {
    const info = resolveInfoOf(context);
    return `${info?.parentType?.name ?? '?'}.${info?.fieldName ?? '?'}`;
  }
}

/**
 * The token of a graphql-ws connection: `connectionParams.authorization` (`Bearer <token>`, as an
 * HTTP client would send it), or `connectionParams.token` (the bare token). Both at once is two tokens.
 * @throws InvalidRequestException / InvalidTokenException as for the HTTP header.
 */
export function connectionParamsToken(params: Readonly<Record<string, unknown>> | undefined): string | undefined {
  if (params === undefined || params === null || typeof params !== 'object') return undefined;
  const values: string[] = [];
  for (const name of ['authorization', 'Authorization', 'token']) {
    const value = params[name];
    if (value === undefined || value === null) continue;
    // JSON from the client: a number, array or object is a malformed credential, not an absent one.
    if (typeof value !== 'string') throw new InvalidTokenException('token_malformed');
    values.push(name === 'token' ? `Bearer ${value}` : value);
  }
  return parseBearerCredentials(values);
}

/** `extensions.code` per refusal status: Apollo's codes where it has one, else the status's reason phrase. */
const GRAPHQL_CODE: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  429: 'TOO_MANY_REQUESTS',
  500: 'INTERNAL_SERVER_ERROR',
  // A failed token exchange (catalogue Q8): the zone answered unexpectedly, or not in time.
  502: 'BAD_GATEWAY',
  503: 'SERVICE_UNAVAILABLE',
  504: 'GATEWAY_TIMEOUT',
};

/** The errors of a shared refusal for fields naming other scopes, by scope. */
const BY_SCOPE = Symbol('keycard.graphql-error-by-scope');

/**
 * Makes a refusal a GraphQL error graphql-js passes on as it is: the fixed description as message,
 * `extensions` (graphql-js copies an original error's `extensions`), and a stack of one line, so
 * servers that add `extensions.stacktrace` (Apollo outside production) show no frames (N10).
 * It stays an `HttpException`, so Nest logs nothing for it.
 *
 * `extensions.scope` is the field's own (Q16; `requiredScopes` for a 401, see `scopeNamed`). One
 * refusal is shared by the fields of an operation refused for the same token (one verification),
 * so a field naming other scopes than the first gets its own error, made once per scope and
 * inheriting everything else from the refusal.
 */
export function asGraphQLError(denial: KeycardException, requiredScopes?: string): KeycardException {
  const scope = denial.scopeNamed(requiredScopes);
  const shared = denial as KeycardException & { extensions?: Record<string, unknown>; [BY_SCOPE]?: Map<string | undefined, KeycardException> };
  if (!Object.hasOwn(denial, 'extensions')) {
    const body = denial.getResponse() as { error: string; error_description: string };
    const extensions: Record<string, unknown> = { code: GRAPHQL_CODE[denial.getStatus()] ?? 'INTERNAL_SERVER_ERROR' };
    if (!(denial instanceof MissingCredentialsException)) extensions.error = body.error;
    extensions.error_description = body.error_description;
    Object.assign(extensions, denial.challengeParams()); // RFC 9470 acr_values / max_age
    if (scope !== undefined) extensions.scope = scope;
    Object.defineProperty(denial, 'extensions', { value: extensions, enumerable: true });
    denial.message = body.error_description;
    denial.stack = body.error_description;
    return denial;
  }
  if (shared.extensions!.scope === scope) return denial;
  const variants = (shared[BY_SCOPE] ??= new Map());
  let variant = variants.get(scope);
  if (variant === undefined) {
    const { scope: _first, ...extensions } = shared.extensions!;
    variant = Object.create(denial, {
      extensions: { value: scope === undefined ? extensions : { ...extensions, scope }, enumerable: true },
    }) as KeycardException;
    variants.set(scope, variant);
  }
  return variant;
}

/**
 * The largest document (in UTF-16 code units) whose refused fields get `locations`. graphql-js
 * finds an error's line and column by scanning the document from its start, once per error: for N
 * refused aliases of a one-line document that is N scans of all of it (50 000 aliases, 350 KB: hours
 * of CPU). Up to this size a scan costs a few microseconds.
 */
export const LOCATED_DOCUMENT_MAX = 16 * 1024;

/**
 * Bounds what graphql-js spends placing `error` (thrown for a field of a document larger than
 * {@link LOCATED_DOCUMENT_MAX}): graphql-js takes the error's own `nodes` over the field's, and
 * finds no location in an empty list, so the field's error names it by `path` only. The
 * refusals of one request share their error, and a request's documents are all judged by the
 * largest: at worst a location is missing, never wrong.
 */
function unlocatedInLargeDocument<E extends Error>(error: E, info: ResolveInfo | undefined): E {
  const body = info?.fieldNodes?.[0]?.loc?.source?.body;
  if (body !== undefined && body.length > LOCATED_DOCUMENT_MAX && !('nodes' in error)) {
    Object.defineProperty(error, 'nodes', { value: [], enumerable: false });
  }
  return error;
}

interface RefusedFields {
  refused: number;
  status: number;
}

const refusedFields = new WeakMap<ServerResponse, RefusedFields>();

/** The status of the refusal whose challenge a response carries, per response (see {@link answersFor}). */
const answeringStatus = new WeakMap<ServerResponse, number>();

/**
 * Whether a refusal's headers are the response's: the fields of one operation may be refused for
 * different reasons (the guard's 403 `insufficient_scope` on one, a failed token exchange's 401
 * `invalid_token` on another), and the response has one challenge and one status, which must agree.
 * A 401 (the token itself) takes precedence over a 403 (its scope), which takes precedence over the
 * rest (first come); a refusal of the same status writes again (the scopes named grow, Q12).
 */
function answersFor(response: ServerResponse, status: number): boolean {
  const answering = answeringStatus.get(response);
  if (answering !== undefined && status !== answering && precedence(status) <= precedence(answering)) return false;
  answeringStatus.set(response, status);
  return true;
}

/** 2 for 401, 1 for 403, 0 for any other refusal status. */
function precedence(status: number): number {
  return status === 401 ? 2 : status === 403 ? 1 : 0;
}

/**
 * Q16: the HTTP status is 401/403 when nothing of the operation ran — every root field refused.
 * GraphQL servers answer 200 once execution started (Nest's Apollo driver resets the status), so
 * the status is set where the response head is written, and only in that case.
 */
function statusWhenNothingRan(response: ServerResponse, info: ResolveInfo | undefined, status: number): void {
  if (info === undefined || info.path?.prev !== undefined || typeof response.writeHead !== 'function') return;
  let state = refusedFields.get(response);
  if (state !== undefined && precedence(status) > precedence(state.status)) state.status = status; // the challenge's (see answersFor)
  if (state === undefined) {
    // Counted once per response: the operation is the same for every field refused in it.
    const rootFields = rootFieldCount(info);
    state = { refused: 0, status };
    refusedFields.set(response, state);
    const writeHead = response.writeHead;
    const counted = state;
    response.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
      const final = code === 200 && counted.refused >= rootFields ? counted.status : code;
      return (writeHead as (...args: unknown[]) => ServerResponse).call(this, final, ...rest);
    } as ServerResponse['writeHead'];
  }
  state.refused++;
}

/**
 * How many root fields the operation executes: distinct response keys (alias or name; graphql-js
 * merges fields with one key into one resolver call), fragment spreads and inline fragments
 * expanded. Fields under `@skip` / `@include` are counted, so a doubt leaves the status at 200.
 * `Infinity` when the operation cannot be read (the status is then never changed).
 */
function rootFieldCount(info: ResolveInfo): number {
  const selectionSet = info.operation?.selectionSet;
  if (selectionSet === undefined) return Infinity;
  const keys = new Set<string>();
  const seen = new Set<string>();
  const visit = (set: SelectionSet | undefined): boolean => {
    for (const selection of set?.selections ?? []) {
      if (selection.kind === 'Field') keys.add(selection.alias?.value ?? selection.name?.value ?? '');
      else if (selection.kind === 'InlineFragment') {
        if (!visit(selection.selectionSet)) return false;
      } else if (selection.kind === 'FragmentSpread') {
        const name = selection.name?.value ?? '';
        if (seen.has(name)) continue;
        seen.add(name);
        const fragment = info.fragments?.[name];
        if (fragment === undefined || !visit(fragment.selectionSet)) return false;
      } else return false;
    }
    return true;
  };
  return visit(selectionSet) ? keys.size : Infinity;
}
