import type { ExecutionContext } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { TraceIds } from '../logging/trace-context.js';
import type { DenialReason, KeycardException } from '../resource-server/keycard.exceptions.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import type { Call } from './call.js';
import { matchedByOf, type PerformedBy, type RevocationMatch } from './decision-event-kinds.js';
import { type DecisionReason, reasonOfCode } from './decision-reason.js';

/*
 * The decision event: its shape (what observers receive, catalogue W1) and how it is built from
 * what the core knows, only when someone listens — its outcome, the call as its door names it
 * (never the raw path), and the trace it belongs to. Publishing it is `DecisionEvents`' part.
 */

/**
 * What was decided about a call (catalogue W2): `admitted` (a verified agent, or a `@Public()` call
 * with none); `refused` (a challenge, a transport refusal, or the context's own error);
 * `step_up_required` (RFC 9470: the user must sign in again, more strongly or more recently);
 * `revoked` (the token matched the revocation list); `rate_limited` (the throttler integration's 429).
 * @publicApi
 */
export type DecisionType = 'admitted' | 'refused' | 'step_up_required' | 'revoked' | 'rate_limited';

/** What the user must do again, and what the token showed (RFC 9470 §3, §6.1), on a `step_up_required` decision. @publicApi */
export interface StepUpEvidence {
  /** The acceptable `acr` values, space-separated, in order of preference (the challenge's `acr_values`). */
  readonly acrValues?: string;
  /** The largest accepted age of the authentication, in seconds (the challenge's `max_age`). */
  readonly maxAge?: number;
  /** The token's `acr`, when a string. */
  readonly acr?: string;
  /** The token's `auth_time` (seconds since the epoch), when a number. */
  readonly authTime?: number;
}

/**
 * One decision of the module, published once to every subscriber ({@link DecisionEvents}). Built
 * only from verified claims: `performedBy`, `onBehalfOf`, `sessionId` and `tokenId` are absent
 * when the token was not verified (catalogue W2). Never holds the token.
 *
 * Shape (catalogue W1; the audit record, version 2, carries the same fields):
 * `{ type, reason?, detail?, status, call: { kind, name, method, route, carrier? }, performedBy?:
 * { issuer, agentId, clientId }, onBehalfOf?, sessionId?, tokenId?, resource?, requiredScopes?,
 * missingScopes?, stepUp?, matchedBy?, traceId?, spanId?, public?, final }`.
 * @publicApi
 */
export interface DecisionEvent {
  readonly type: DecisionType;
  /** Why it was refused, in the shared vocabulary (absent when admitted). */
  readonly reason?: DecisionReason;
  /**
   * The precise code (`signature_invalid`, `expired`, `forbidden_origin`, …), as audit records carry it as `reason`;
   * on an admission, why it was served without an agent (`zone_unavailable`: an `@OptionalAuth()` call in a zone outage).
   */
  readonly detail?: string;
  /** The HTTP status the answer has or would have had over HTTP: 200 (101 for a connection opened), 401, 403, 429, 503, … */
  readonly status: number;
  /** The door and the call (`http`, `GET`, `/orders/:id`). */
  readonly call: DecidedCall;
  /** The agent: its issuer, stable id and `client_id`. Only from a verified token. */
  readonly performedBy?: PerformedBy;
  /** The user (`sub`) the agent acts for. */
  readonly onBehalfOf?: string;
  /** `sid`: the user's session at the zone; a step-up and the call it unlocks share it (catalogue W3). */
  readonly sessionId?: string;
  /** `jti`. */
  readonly tokenId?: string;
  /** The resource identifier that judged the call, when chosen. */
  readonly resource?: string;
  /** The scopes the call requires, when any. */
  readonly requiredScopes?: readonly string[];
  /** Of those, the ones the verified token lacks (for `insufficient_scope`). */
  readonly missingScopes?: readonly string[];
  /** For `step_up_required`: what the challenge asks for and what the token showed. */
  readonly stepUp?: StepUpEvidence;
  /** For `revoked`: the revocation-list entry that matched (the `entry` of its `revocation_applied` event). */
  readonly matchedBy?: RevocationMatch;
  /**
   * W3C trace id (32 hex) of the span active when the call was decided (with
   * `nestjs-keycard/telemetry`), else of the request's `traceparent` header: the correlation id.
   */
  readonly traceId?: string;
  /** The span id of that active span, when there is one. */
  readonly spanId?: string;
  /** True for a `@Public()` call (admitted without authentication). */
  readonly public?: boolean;
  /** The verified agent, when there is one (the whole {@link AgentContext}). */
  readonly agent?: AgentContext;
  /**
   * The Nest execution context of the call; absent for a decision taken before there is one (a
   * WebSocket, socket.io or graphql-ws connection judged as it opens: see `call.carrier`).
   */
  readonly context?: ExecutionContext;
  /**
   * False when another judge of the same call will publish its final outcome (the throttler
   * integration, which may still answer 429 after this admission). Observers that record one
   * line per call wait for the final event.
   */
  readonly final: boolean;
  /** @internal The core's call object, for the module's own observers; absent where {@link context} is. */
  readonly source?: Call;
  /** @internal `performance.now()` when the decision began (0 when unknown), for durations. */
  readonly started: number;
  /** @internal The `traceparent` header a connection opened with, for a tracer to continue (a call's is on its request). */
  readonly traceparent?: string;
}

/** What the core knows of an outcome when it publishes it. */
export interface Outcome {
  /** The HTTP status the answer has or would have had (200 when admitted). */
  readonly status: number;
  /**
   * The denial code of a refusal (a {@link DenialReason}, or a transport refusal's: `forbidden_origin`, `header_mismatch`);
   * of an admission without an agent, why (`zone_unavailable`).
   */
  readonly detail?: DenialReason | 'forbidden_origin' | 'header_mismatch';
  /** The verified agent, when there is one (never an unverified token's claims). */
  readonly agent?: AgentContext;
  readonly public?: boolean;
  /** False when a later judge (the throttler) publishes the call's final outcome; default true. */
  readonly final?: boolean;
  /** For a step-up refusal: the challenge's `acr_values` and `max_age`. */
  readonly stepUp?: { readonly acrValues?: string; readonly maxAge?: number };
  /** For a revoked token: the entry that matched. */
  readonly matchedBy?: RevocationMatch;
  /** For a connection judged as it opens: `performance.now()` when its verification began. */
  readonly started?: number;
}

/**
 * The {@link Outcome} of a refusal: its status and code, the agent when one was verified, and what
 * a step-up asks for or the revocation entry that matched.
 */
export function refusalOutcome(denial: KeycardException, agent: AgentContext | undefined): Outcome {
  const outcome = { status: denial.getStatus(), detail: denial.code, agent };
  if (denial.code === 'insufficient_user_authentication') {
    const params = denial.challengeParams();
    const maxAge = params?.max_age === undefined ? undefined : Number(params.max_age);
    return { ...outcome, stepUp: { ...(params?.acr_values === undefined ? {} : { acrValues: params.acr_values }), ...(maxAge === undefined ? {} : { maxAge }) } };
  }
  const matchedBy = denial.code === 'revoked' ? matchedByOf(denial) : undefined;
  return matchedBy === undefined ? outcome : { ...outcome, matchedBy };
}

function typeOf(outcome: Outcome): DecisionType {
  if (outcome.status < 400) return 'admitted';
  switch (outcome.detail) {
    case 'rate_limited':
      return 'rate_limited';
    case 'insufficient_user_authentication':
      return 'step_up_required';
    case 'revoked':
      return 'revoked';
    default:
      return 'refused';
  }
}

/**
 * The {@link DecisionEvent} of `call`'s outcome (or of a connection opening, `call` absent). Built
 * only when someone listens. `trace`: the span active now, when a tracer is registered; without
 * one, a call's event names the `traceparent` of its HTTP request.
 */
export function eventOf(call: Call | undefined, outcome: Outcome & { call?: DecidedCall; traceparent?: string | string[] }, trace: TraceIds | undefined): DecisionEvent {
  const { agent, detail, status } = outcome;
  const required = call?.requiredScopes;
  const event = new Event(call, outcome.started, typeof outcome.traceparent === 'string' ? outcome.traceparent : undefined);
  event.type = typeOf(outcome);
  if (detail !== undefined) {
    // An admission's detail (why it was served without an agent) is no refusal's reason.
    if (event.type !== 'admitted') event.reason = detail === 'forbidden_origin' || detail === 'header_mismatch' ? 'invalid_request' : reasonOfCode(detail, status);
    event.detail = detail;
  }
  event.status = status;
  if (agent !== undefined) {
    event.performedBy = { issuer: agent.issuer, agentId: agent.agentId, clientId: agent.clientId };
    event.onBehalfOf = agent.subject;
    event.sessionId = agent.sessionId;
    event.tokenId = agent.tokenId;
    event.agent = agent;
  }
  event.resource = call?.resource?.id;
  event.requiredScopes = required;
  if (detail === 'insufficient_scope') event.missingScopes = missing(agent, required);
  if (outcome.stepUp !== undefined) event.stepUp = stepUpOf(outcome.stepUp, agent);
  if (outcome.matchedBy !== undefined) event.matchedBy = outcome.matchedBy;
  if (outcome.public !== undefined) event.public = outcome.public;
  event.final = outcome.final ?? true;
  // What the call is and which trace it belongs to, both read from the call's own door.
  event.call = outcome.call ?? decidedCallOf(call!);
  const ids = trace ?? (call === undefined ? undefined : traceOfRequest(call));
  if (ids !== undefined) {
    event.traceId = ids.traceId;
    if (ids.spanId !== '') event.spanId = ids.spanId;
  }
  return event;
}

function stepUpOf(asked: NonNullable<Outcome['stepUp']>, agent: AgentContext | undefined): StepUpEvidence {
  const acr = agent?.claims.acr;
  const authTime = agent?.claims.auth_time;
  return {
    ...asked,
    ...(typeof acr === 'string' ? { acr } : {}),
    ...(typeof authTime === 'number' ? { authTime } : {}),
  };
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * A {@link DecisionEvent}. `context` and `source` are references, not data: getters on the class,
 * so printing or serialising an event leaves them out (the request behind the context holds the
 * Authorization header), without the cost of defining non-enumerable properties on each event.
 */
class Event implements Writable<Omit<DecisionEvent, 'context' | 'source' | 'started' | 'traceparent'>> {
  type!: DecisionType;
  reason?: DecisionReason;
  detail?: string;
  status!: number;
  call!: DecidedCall;
  performedBy?: PerformedBy;
  onBehalfOf?: string;
  sessionId?: string;
  tokenId?: string;
  resource?: string;
  requiredScopes?: readonly string[];
  missingScopes?: readonly string[];
  stepUp?: StepUpEvidence;
  matchedBy?: RevocationMatch;
  traceId?: string;
  spanId?: string;
  public?: boolean;
  agent?: AgentContext;
  final!: boolean;
  readonly #source: Call | undefined;
  readonly #started: number;
  readonly #traceparent: string | undefined;

  constructor(source: Call | undefined, started = 0, traceparent?: string) {
    this.#source = source;
    this.#started = source?.started ?? started;
    this.#traceparent = traceparent;
  }

  /** The `traceparent` header a connection opened with (a call's is on its request). */
  get traceparent(): string | undefined {
    return this.#traceparent;
  }

  /** `performance.now()` when the decision began; 0 when unknown. */
  get started(): number {
    return this.#started;
  }

  get context(): ExecutionContext | undefined {
    return this.#source?.context;
  }

  get source(): Call | undefined {
    return this.#source;
  }
}

function missing(agent: AgentContext | undefined, required: readonly string[] | undefined): readonly string[] | undefined {
  if (required === undefined) return undefined;
  if (agent === undefined) return required;
  return required.filter((scope) => !agent.scopes.includes(scope));
}

/**
 * The call a decision event is about (catalogue W1): the door, and the call as an audit line
 * names it. Never the raw path (it may hold ids or a credential), never a query string.
 * @publicApi
 */
export interface DecidedCall {
  /** The door: `http`, `graphql`, `ws`, `rpc`, `mcp` (an mcp-nest tool call). */
  readonly kind: string;
  /** The call as logs name it: `GET /orders`, `graphql query Orders.orders`, `ws orders:watch`, `socket.io connection`. */
  readonly name: string;
  /**
   * The HTTP method over HTTP (`GET`); else the door in capitals: `GRAPHQL`, `WS`, `RPC`, `MCP`, and
   * `GRAPHQL-WS` for a graphql-ws `connection_init`.
   */
  readonly method: string;
  /**
   * Over HTTP the route pattern the router matched, global prefix and version included
   * (`/api/v1/orders/:id` for `/api/v1/orders/42?x=1`); elsewhere the operation and field, the event
   * pattern or the handler; for a connection `connection ws`, `connection socket.io` or `connection`.
   */
  readonly route: string;
  /**
   * For a decision on a long-lived carrier as it opens (no Nest `ExecutionContext` exists yet):
   * `ws`, `socket.io` or `graphql-ws`. Absent for calls.
   */
  readonly carrier?: 'ws' | 'socket.io' | 'graphql-ws';
}

/** The {@link DecidedCall} of a call the core decided. */
export function decidedCallOf(call: Call): DecidedCall {
  const { kind, context, carrier } = call;
  const name = kind.describe(context, carrier);
  if (kind.name === 'http') {
    const raw = rawRequestOf(carrier);
    return { kind: kind.name, name, method: raw.method ?? 'GET', route: routeOf(context, carrier) };
  }
  const space = name.indexOf(' ');
  return { kind: kind.name, name, method: name.slice(0, space).toUpperCase(), route: name.slice(space + 1) };
}

/** The {@link DecidedCall} of a connection judged as it opens: `call` as the connection hooks name it (`socket.io connection`). */
export function openingCallOf(call: string): DecidedCall {
  const carrier = call.slice(0, call.indexOf(' ')) as 'ws' | 'socket.io' | 'graphql-ws';
  if (carrier === 'graphql-ws') return { kind: 'graphql', name: call, method: 'GRAPHQL-WS', route: 'connection', carrier };
  return { kind: 'ws', name: call, method: 'WS', route: `connection ${carrier}`, carrier };
}

/**
 * The route pattern the router matched (`/api/v1/orders/:id`), global prefix and version included,
 * not the request path: no ids or query strings in the logs (catalogue M22). Express and Fastify
 * both record it on the request; the controller's own paths are the fallback for other adapters.
 */
export function routeOf(context: ExecutionContext, request: object): string {
  const matched = request as { baseUrl?: unknown; route?: { path?: unknown }; routeOptions?: { url?: unknown } };
  const fastify = matched.routeOptions?.url;
  if (typeof fastify === 'string') return fastify;
  const express = matched.route?.path;
  if (typeof express === 'string') return (typeof matched.baseUrl === 'string' ? matched.baseUrl : '') + express;
  const join = (...parts: (string | string[] | undefined)[]) =>
    '/' + parts.map((p) => (Array.isArray(p) ? p[0] : p) ?? '').map((p) => p.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/');
  return join(
    Reflect.getMetadata(PATH_METADATA, context.getClass()) as string | string[] | undefined,
    Reflect.getMetadata(PATH_METADATA, context.getHandler()) as string | string[] | undefined,
  );
}

/** The trace of `call`'s HTTP request (its `traceparent` header), for an app without a tracer: no span id of ours. */
export function traceOfRequest(call: Call): TraceIds | undefined {
  const traceId = traceIdOfHeaders(call.kind.httpRequest(call.context, call.carrier)?.headers);
  return traceId === undefined ? undefined : { traceId, spanId: '' };
}

/** A W3C `traceparent` (version 00): version, 32-hex trace id, 16-hex parent id, flags. */
const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-[\da-f]{2}$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_PARENT = '0'.repeat(16);

/**
 * The trace id of a request's W3C `traceparent` header (W3C Trace Context §3.2), for events of an
 * app without an OpenTelemetry SDK; `undefined` when absent, repeated or malformed (an all-zero id
 * and version ff are invalid). The client's header: a correlation id, nothing is trusted because of it.
 */
export function traceIdOfHeaders(headers: IncomingHttpHeaders | undefined): string | undefined {
  const value = headers?.traceparent;
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  const match = TRACEPARENT.exec(value);
  // Version ff and all-zero ids are invalid (§3.2.2.1, §3.2.2.3), as an OpenTelemetry SDK judges them.
  if (match === null || match[1] === 'ff' || match[2] === ZERO_TRACE || match[3] === ZERO_PARENT) return undefined;
  return match[2];
}
