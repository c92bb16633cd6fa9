import { type ExecutionContext, Inject, Injectable, Optional } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import { inspect } from 'node:util';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { DecisionEvents, type DecisionEvent } from '../decision/decision-events.js';
import { isVerifiedAgent } from './access-token-rules.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import { LOG_VALUE_MAX_LENGTH, logCapped, logSafeJson } from '../logging/log-safe.js';
import { KEYCARD_TRACE_CONTEXT, type TraceContextSource, type TraceIds } from '../logging/trace-context.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { DenialReason } from './keycard.exceptions.js';
import { requestState } from './request-state.js';
import { rawRequestOf } from './resource-resolver.js';

/** One audit line: who did what, with which outcome. Never the token. */
export interface AuditRecord {
  event: 'keycard.audit';
  /** `iss` of the verified token: `agent` and `user` are unique only at their issuer (catalogue O15). */
  issuer?: string;
  /** `client_id` of the verified token. */
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
   * W3C trace id (32 hex) and span id (16 hex) of the span active when the call was decided (the
   * HTTP server span), when `nestjs-keycard/telemetry` is imported and a span is active.
   */
  traceId?: string;
  spanId?: string;
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
class AuditLine {
  constructor(record: AuditRecord) {
    Object.assign(this, record);
  }

  toString(): string {
    return logSafeJson(this);
  }

  [inspect.custom](): string {
    return this.toString();
  }
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
  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Optional() events?: DecisionEvents,
    @Optional() @Inject(KEYCARD_TRACE_CONTEXT) private readonly traces?: TraceContextSource,
  ) {
    if (options.auditLog) events?.subscribe((event) => this.onDecision(event));
  }

  private onDecision(event: DecisionEvent): void {
    const { source: call } = event;
    if (call.answeredOverHttp) {
      this.track(call.context, call.kind, call.started || undefined);
      if (event.status < 400) return;
      this.noteRefused(call.context, call.kind, call.carrier);
      if (event.type === 'rate_limited') requestState(call.carrier).denial ??= 'rate_limited';
      return;
    }
    // A public call outside HTTP has no line; one another judge still rules on waits for its final event.
    if (!event.final || (event.public === true && event.status < 400)) return;
    this.recordCall(call.describe(), { agent: event.agent, status: event.status, reason: event.detail, started: call.started || undefined });
  }

  /**
   * Arranges the audit line of the call in `context` (once per request) when it is answered over
   * HTTP: plain routes (the route pattern) and GraphQL operations (the operation and field).
   * `started`: when the decision began (`performance.now()`), for the line's `durationMs`.
   */
  track(context: ExecutionContext, kind: CallKind, started = performance.now()): void {
    const request = kind.carrier(context) as Carrier & { user?: AgentContext };
    const raw = kind.httpResponse(context, request);
    if (raw === undefined) return;
    const state = requestState(request);
    if (state.audited) return;
    state.audited = true;
    const method = rawRequestOf(request).method ?? 'GET';
    const route = kind.name === 'http' ? routeOf(context, request) : (kind.describeRequest?.(context, request) ?? kind.describe(context, request));
    // The span is active now, while the call is decided; no longer when the response finishes.
    const trace = this.traces?.current();
    raw.once('finish', () => {
      const agent = isVerifiedAgent(request.user) ? request.user : state.agent;
      // A 429 is the rate limiter's answer, whatever an earlier call of the request was refused for.
      const reason = raw.statusCode === 429 ? 'rate_limited' : state.denial;
      this.write(agent, { method, route, status: raw.statusCode, started, reason, refused: state.refused === undefined ? undefined : [...state.refused], trace });
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
   * Writes the audit line of a call answered outside HTTP, once its outcome is known: `call` names
   * it (`ws orders:watch`, `graphql subscription OnOrder.orderAdded`, `rpc Orders.find`); `status`
   * is the HTTP status the answer would have had (200 when admitted, 429 `rate_limited` when a rate
   * limiter answered), `reason` the denial code; `started` when the decision began.
   */
  recordCall(call: string, outcome: CallOutcome = {}): void {
    const { agent, status = 200, reason, started = performance.now() } = outcome;
    const space = call.indexOf(' ');
    this.write(agent, { method: call.slice(0, space).toUpperCase(), route: call.slice(space + 1), status, started, reason });
  }

  /**
   * Writes the audit line of a WebSocket connection opened (`status` 101, with its agent; none for
   * an anonymous one) or refused (the refusal's HTTP status and code, no agent), for `call` as the
   * connection hooks name it: `ws connection` and `socket.io connection` (gateway handshakes:
   * method `WS`, route `connection ws` / `connection socket.io`) or `graphql-ws connection`
   * (method `GRAPHQL-WS`, route `connection`). `started`: when the verification began.
   */
  recordConnection(call: string, started: number, outcome: CallOutcome = {}): void {
    const { agent, status = 101, reason } = outcome;
    const protocol = call.slice(0, call.indexOf(' '));
    const method = protocol === 'graphql-ws' ? 'GRAPHQL-WS' : 'WS';
    this.write(agent, { method, route: protocol === 'graphql-ws' ? 'connection' : `connection ${protocol}`, status, started, reason });
  }

  private write(agent: AgentContext | undefined, line: LineFields): void {
    const { method, route, status, started, reason, refused } = line;
    const trace = line.trace ?? this.traces?.current();
    // Claims and call names are the client's: capped, so a 100 KB `sub` is not a 100 KB record.
    const record: AuditRecord = {
      event: 'keycard.audit',
      issuer: logCapped(agent?.issuer),
      agent: logCapped(agent?.clientId),
      user: logCapped(agent?.subject),
      session: logCapped(agent?.sessionId),
      scopes: agent?.scopes.some((scope) => scope.length > LOG_VALUE_MAX_LENGTH) ? agent.scopes.map((scope) => logCapped(scope)) : agent?.scopes,
      tokenId: logCapped(agent?.tokenId),
      method: logCapped(method),
      route: logCapped(route),
      status,
      durationMs: Math.round((performance.now() - started) * 100) / 100,
      reason,
      refused,
      traceId: trace?.traceId,
      spanId: trace?.spanId,
    };
    this.options.logger.log(new AuditLine(record));
  }
}

/** How a call or connection ended, for its audit line. */
export interface CallOutcome {
  /** The verified agent, if any (never an unverified token's claims). */
  readonly agent?: AgentContext;
  /** The HTTP status the answer has or would have had. */
  readonly status?: number;
  readonly reason?: DenialReason;
  /** `performance.now()` when the decision began. */
  readonly started?: number;
}

/** What one audit line says of the call, besides the agent. */
interface LineFields {
  method: string;
  route: string;
  status: number;
  /** `performance.now()` when the decision began. */
  started: number;
  reason: string | undefined;
  refused?: readonly string[];
  /** The ids of the span active when the call was decided; else those active when the line is written. */
  trace?: TraceIds;
}

/**
 * The route pattern the router matched (`/api/v1/orders/:id`), global prefix and version included,
 * not the request path: no ids or query strings in the logs (catalogue M22). Express and Fastify
 * both record it on the request; the controller's own paths are the fallback for other adapters.
 */
function routeOf(context: ExecutionContext, request: object): string {
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
