import { type ExecutionContext, Inject, Injectable, Optional } from '@nestjs/common';
import { inspect } from 'node:util';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { routeOf } from '../decision/decision-event.js';
import type { RevocationMatch } from '../decision/decision-event-kinds.js';
import { DecisionEvents, type DecisionEvent, type DecisionType, type StepUpEvidence } from '../decision/decision-events.js';
import { isVerifiedAgent } from './access-token-rules.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import { LOG_VALUE_MAX_LENGTH, logCapped, logSafeJson } from '../logging/log-safe.js';
import { KEYCARD_TRACE_CONTEXT, type TraceContextSource, type TraceIds } from '../logging/trace-context.js';
import { onceResponseEnds } from '../logging/response-ended.js';
import type { KeycardOptions } from '../keycard-options.js';
import { requestState } from './request-state.js';
import { rawRequestOf } from './resource-resolver.js';

/** The version of the {@link AuditRecord} shape: 2 added the decision event's fields (catalogue W1). */
export const AUDIT_RECORD_VERSION = 2;

/**
 * One audit line: who did what, with which outcome. Never the token. Version 2 carries the
 * decision event's fields (`type`, `agentId`, `call`, `resource`, `requiredScopes`, …) beside
 * every field of version 1, which keep their meaning; the event's `performedBy` is `issuer`,
 * `agentId` and `agent`, its `onBehalfOf` and `sessionId` are `user` and `session`.
 */
export interface AuditRecord {
  event: 'keycard.audit';
  /** {@link AUDIT_RECORD_VERSION}. Absent in version 1 records. */
  version: number;
  /** The decision: `admitted`, `refused`, `step_up_required`, `revoked`, `rate_limited`. */
  type: DecisionType;
  /** `iss` of the verified token: `agent` and `user` are unique only at their issuer (catalogue O15). */
  issuer?: string;
  /** `client_id` of the verified token (version 1; also `performedBy.clientId`). */
  agent?: string;
  user?: string;
  session?: string;
  scopes?: readonly string[];
  tokenId?: string;
  /**
   * HTTP method; `WS`, `GRAPHQL`, `RPC` or `MCP` for calls answered outside HTTP; `WS` (gateway
   * handshakes) and `GRAPHQL-WS` (graphql-ws `connection_init`) for connections opened or refused.
   */
  method: string;
  /**
   * Route pattern; for a GraphQL operation over HTTP the operation (`graphql query Orders`); for
   * other contexts the operation and field, the event pattern or the handler; for a connection
   * `connection ws`, `connection socket.io` or `connection`.
   */
  route: string;
  /** HTTP status of the answer (101 for an opened connection; for other non-HTTP calls, the status it would have had). */
  status: number;
  /**
   * Over HTTP, from the guard's first look at the request to the end of the response. Elsewhere the
   * time the decision took (token verification, the throttler's count), not the handler's: the
   * record is written when the call is decided. For a connection, the verification of its token.
   */
  durationMs: number;
  /** Why the request was refused (401/403/429/503), as a stable code. */
  reason?: string;
  /**
   * The fields refused in a GraphQL operation over HTTP, as schema coordinates (`Query.orders`),
   * each once, in the order refused: at most {@link REFUSED_FIELDS_MAX}, then `…`. Absent when
   * nothing was refused. With `status: 200`, the rest of the operation was served.
   */
  refused?: readonly string[];
  /**
   * W3C trace id (32 hex) and span id (16 hex) of the span that records the decision, when
   * `nestjs-keycard/telemetry` is imported: the span active when the call was decided (the HTTP
   * server span), else the module's own `keycard.decision` span (a gateway message, a connection
   * as it opens), which continues the carrier's `traceparent`. Without it, `traceId` alone, from
   * the request's `traceparent`.
   */
  traceId?: string;
  spanId?: string;
  /**
   * The agent's stable id: `keycard_app_id`, else `client_id` (catalogue T30, Q18). With `issuer`
   * and `agent` (its `client_id`) it is the event's `performedBy`; `user` and `session` are its
   * `onBehalfOf` and `sessionId` (not repeated, so a long claim costs the line once).
   */
  agentId?: string;
  /** The door (`http`, `graphql`, `ws`, `rpc`, `mcp`) with `method` and `route` as above. */
  call: { kind: string; method: string; route: string };
  /** The resource identifier that judged the call. */
  resource?: string;
  requiredScopes?: readonly string[];
  /** For `insufficient_scope`: the required scopes the token lacks. */
  missingScopes?: readonly string[];
  /** For `step_up_required`: the `acr_values` / `max_age` asked for, and the token's `acr` / `auth_time`. */
  stepUp?: StepUpEvidence;
  /** For `revoked`: the revocation-list entry that matched. */
  matchedBy?: RevocationMatch;
  /**
   * `true` when the client closed the connection before the answer was finished (the record is
   * written then; the handler of an admitted call may still be running). `status` is the one the
   * response had at that moment (200 when nothing set it yet). Absent otherwise.
   */
  aborted?: true;
}

/** How many refused fields one record names (an operation may alias one field hundreds of times, or name many). */
export const REFUSED_FIELDS_MAX = 16;

/**
 * An {@link AuditRecord} handed to the logger as an object, so structured loggers keep its fields:
 * nestjs-pino merges them into the log line, Nest's `ConsoleLogger` with `json: true` nests them
 * under `message`. Loggers that write text get one line of JSON, as `String(line)` or through
 * `util.inspect` (Nest's text `ConsoleLogger`), instead of a multi-line object dump.
 *
 * The fields hold the claims as the token carries them (capped in length, see
 * {@link AuditTrail}), not escaped: a JSON logger encodes them itself (CR, LF and ESC become `\n`,
 * `\u001b`, so a record stays one line) and whoever reads the record gets the agent's real
 * `client_id` and `sub` back, not our spelling of them. The text rendering is ours, and there
 * `JSON.stringify` would leave DEL, C1 controls, U+2028/2029 and bidi overrides raw for the terminal:
 * {@link logSafeJson} writes them as `\uXXXX`, which is still JSON for the same values (CWE-117).
 */
class AuditLine implements AuditRecord {
  readonly event = 'keycard.audit';
  readonly version = AUDIT_RECORD_VERSION;
  readonly type: DecisionType;
  readonly issuer?: string;
  readonly agent?: string;
  readonly user?: string;
  readonly session?: string;
  readonly scopes?: readonly string[];
  readonly tokenId?: string;
  readonly method: string;
  readonly route: string;
  readonly status: number;
  readonly durationMs: number;
  readonly reason?: string;
  readonly refused?: readonly string[];
  readonly traceId?: string;
  readonly spanId?: string;
  readonly agentId?: string;
  readonly call: { kind: string; method: string; route: string };
  readonly resource?: string;
  readonly requiredScopes?: readonly string[];
  readonly missingScopes?: readonly string[];
  readonly stepUp?: StepUpEvidence;
  readonly matchedBy?: RevocationMatch;
  readonly aborted?: true;

  /**
   * The record of `decision` with what `line` says of the call; its own fields, written once (no
   * record copied into the line: a refused message burst writes one per message). Claims and call
   * names are the client's: capped, so a 100 KB `sub` is not a 100 KB record.
   */
  constructor(decision: DecisionEvent | undefined, line: LineFields) {
    const agent = line.agent ?? decision?.agent;
    const method = logCapped(line.method);
    const route = logCapped(line.route);
    this.type = typeOfLine(decision, line.status);
    this.issuer = logCapped(agent?.issuer);
    this.agent = logCapped(agent?.clientId);
    this.user = logCapped(agent?.subject);
    this.session = logCapped(agent?.sessionId);
    this.scopes = agent === undefined ? undefined : cappedScopes(agent.scopes);
    this.tokenId = logCapped(agent?.tokenId);
    this.method = method;
    this.route = route;
    this.status = line.status;
    this.durationMs = Math.round((performance.now() - line.started) * 100) / 100;
    this.reason = line.reason;
    this.refused = line.refused;
    this.traceId = line.trace?.traceId;
    this.spanId = line.trace?.spanId || undefined;
    this.agentId = logCapped(agent?.agentId);
    this.call = { kind: line.kind ?? decision?.call.kind ?? 'http', method, route };
    this.resource = decision?.resource;
    this.requiredScopes = decision?.requiredScopes;
    this.missingScopes = decision?.missingScopes;
    this.stepUp = decision?.stepUp;
    this.matchedBy = decision?.matchedBy;
    if (line.aborted === true) this.aborted = true;
  }

  toString(): string {
    return logSafeJson(this);
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** `scopes` as they are, or each capped when one is longer than {@link LOG_VALUE_MAX_LENGTH} (a loop: no closure per record). */
function cappedScopes(scopes: readonly string[]): readonly string[] {
  for (const scope of scopes) if (scope.length > LOG_VALUE_MAX_LENGTH) return scopes.map((s) => logCapped(s));
  return scopes;
}

/**
 * Writes one structured line per request when `auditLog` is on, once the response is finished, so
 * denials by the guard or a rate limiter (which no interceptor sees) are recorded too. Goes to the
 * module's logger (Nest's `Logger` by default, so nestjs-pino and friends pick it up) as an object
 * (see {@link AuditLine}), never as a JSON string inside the message.
 *
 * An observer of the decision events (STYLE 26): it subscribes to {@link DecisionEvents} and never
 * reaches into the guard. Calls answered over HTTP get one line per request, written when the
 * response is finished; calls answered elsewhere (gateway messages, graphql-ws, microservices) one
 * line per final decision.
 */
@Injectable()
export class AuditTrail {
  /** The decision a request's line reports (its first refusal, else its admission), by carrier. */
  private readonly decisions = new WeakMap<object, DecisionEvent>();

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Optional() events?: DecisionEvents,
    @Optional() @Inject(KEYCARD_TRACE_CONTEXT) private readonly traces?: TraceContextSource,
  ) {
    if (options.auditLog) events?.subscribe((event) => this.onDecision(event));
  }

  private onDecision(event: DecisionEvent): void {
    const { source: call } = event;
    // A connection judged as it opens: no call, its own line (a flood of forged handshakes shows).
    if (call === undefined) return this.write(event, { method: event.call.method, route: event.call.route, status: event.status, started: event.started || performance.now(), reason: event.detail, trace: this.traceOf(event) });
    if (call.answeredOverHttp) {
      const held = this.decisions.get(call.carrier);
      if (held === undefined || (held.status < 400 && event.status >= 400)) this.decisions.set(call.carrier, event);
      this.track(call.context, call.kind, call.started || undefined, event);
      if (event.status < 400) return;
      this.noteRefused(call.context, call.kind, call.carrier);
      if (event.type === 'rate_limited') requestState(call.carrier).denial ??= 'rate_limited';
      return;
    }
    // A public call outside HTTP has no line; one another judge still rules on waits for its final event.
    if (!event.final || (event.public === true && event.status < 400)) return;
    this.write(event, { method: event.call.method, route: event.call.route, status: event.status, started: call.started || performance.now(), reason: event.detail, trace: this.traceOf(event) });
  }

  /**
   * Arranges the audit line of the call in `context` (once per request) when it is answered over
   * HTTP: plain routes (the route pattern) and GraphQL operations (the operation and field).
   * `started`: when the decision began (`performance.now()`), for the line's `durationMs`;
   * `decision`: the event that asked for the line, whose span the line names.
   */
  track(context: ExecutionContext, kind: CallKind, started = performance.now(), decision?: DecisionEvent): void {
    const request = kind.carrier(context) as Carrier & { user?: AgentContext };
    const raw = kind.httpResponse(context, request);
    if (raw === undefined) return;
    const state = requestState(request);
    if (state.audited) return;
    state.audited = true;
    const method = rawRequestOf(request).method ?? 'GET';
    const route = kind.name === 'http' ? routeOf(context, request) : (kind.describeRequest?.(context, request) ?? kind.describe(context, request));
    // The span is active now, while the call is decided; no longer when the response finishes.
    const trace = this.traceOf(decision);
    onceResponseEnds(raw, (aborted) => {
      const agent = isVerifiedAgent(request.user) ? request.user : state.agent;
      // A 429 is the rate limiter's answer, whatever an earlier call of the request was refused for.
      const reason = raw.statusCode === 429 ? 'rate_limited' : (state.denial ?? this.decisions.get(request)?.detail);
      const decision = this.decisions.get(request);
      this.write(decision, { agent, kind: kind.name, method, route, status: raw.statusCode, started, reason, refused: state.refused === undefined ? undefined : [...state.refused], trace, aborted });
    });
  }

  /**
   * Notes that the call in `context`, one of several sharing an HTTP request (a GraphQL field), was
   * refused: the request's record names it in `refused` ({@link CallKind.part}). Capped at
   * {@link REFUSED_FIELDS_MAX} names, then `…`.
   */
  noteRefused(context: ExecutionContext, kind: CallKind, carrier: Carrier): void {
    const part = kind.part?.(context);
    if (part === undefined) return;
    const name = logCapped(part);
    const refused = (requestState(carrier).refused ??= new Set());
    if (refused.size < REFUSED_FIELDS_MAX) refused.add(name);
    else if (!refused.has(name)) refused.add('…');
  }

  /**
   * The ids of the span that records `decision`, asked while it is decided (with
   * `nestjs-keycard/telemetry`: the active span, else its own `keycard.decision` span, so the record
   * and the span name each other); without a tracer, the trace id of the call's `traceparent`.
   */
  private traceOf(decision: DecisionEvent | undefined): TraceIds | undefined {
    const traces = this.traces;
    const span = decision === undefined || traces?.spanOf === undefined ? traces?.current() : traces.spanOf(decision);
    return span ?? headerTraceOf(decision);
  }

  private write(decision: DecisionEvent | undefined, line: LineFields): void {
    this.options.logger.log(new AuditLine(decision, line));
  }
}

/** The record's `type`: a 429 is the rate limiter's, whatever was decided before; otherwise the decision's. */
function typeOfLine(decision: DecisionEvent | undefined, status: number): DecisionType {
  if (status === 429) return 'rate_limited';
  if (decision !== undefined) return decision.type;
  return status < 400 ? 'admitted' : 'refused';
}

/** The event's trace id (from the call's `traceparent` when no tracer names a span), without a span id. */
function headerTraceOf(decision: DecisionEvent | undefined): TraceIds | undefined {
  return decision?.traceId === undefined ? undefined : { traceId: decision.traceId, spanId: decision.spanId ?? '' };
}

/** What one audit line says of the call, besides the decision. */
interface LineFields {
  /** The verified agent; else the decision's. */
  agent?: AgentContext;
  /** The door; else the decision's. */
  kind?: string;
  method: string;
  route: string;
  status: number;
  /** `performance.now()` when the decision began. */
  started: number;
  reason: string | undefined;
  refused?: readonly string[];
  /** The ids of the span that recorded the decision, taken while it was decided. */
  trace: TraceIds | undefined;
  /** The client left before the answer was finished. */
  aborted?: boolean;
}
