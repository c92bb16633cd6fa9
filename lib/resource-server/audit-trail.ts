import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import { inspect } from 'node:util';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { isVerifiedAgent } from './access-token-rules.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import { LOG_VALUE_MAX_LENGTH, logCapped, logSafeJson } from '../logging/log-safe.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { DenialReason } from './keycard.exceptions.js';
import { requestState } from './request-state.js';
import { rawRequestOf } from './resource-resolver.js';

/** One audit line: who did what, with which outcome. Never the token. */
export interface AuditRecord {
  event: 'keycard.audit';
  agent?: string;
  user?: string;
  session?: string;
  scopes?: readonly string[];
  tokenId?: string;
  /** HTTP method; `WS`, `GRAPHQL` or `RPC` for calls answered outside HTTP. */
  method: string;
  /** Route pattern; for other contexts the operation and field, the event pattern or the handler. */
  route: string;
  status: number;
  durationMs: number;
  /** Why the request was refused (401/403/429/503), as a stable code. */
  reason?: string;
}

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
 */
@Injectable()
export class AuditTrail {
  constructor(@Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions) {}

  /**
   * Arranges the audit line of the call in `context` (once per request) when it is answered over
   * HTTP: plain routes (the route pattern) and GraphQL operations (the operation and field).
   * Calls answered elsewhere (gateway messages, graphql-ws, microservices) get theirs from
   * {@link recordCall} when the guard decides, or behind the throttler integration once that has
   * counted them.
   */
  track(context: ExecutionContext, kind: CallKind): void {
    const request = kind.carrier(context) as Carrier & { user?: AgentContext };
    const raw = kind.httpResponse(context, request);
    if (raw === undefined) return;
    const state = requestState(request);
    if (state.audited) return;
    state.audited = true;
    const method = rawRequestOf(request).method ?? 'GET';
    const route = kind.name === 'http' ? routeOf(context, request) : kind.describe(context, request);
    const started = performance.now();
    raw.once('finish', () => {
      const agent = isVerifiedAgent(request.user) ? request.user : state.agent;
      this.write(agent, method, route, raw.statusCode, started, state.denial ?? (raw.statusCode === 429 ? 'rate_limited' : undefined));
    });
  }

  /**
   * Writes the audit line of a call answered outside HTTP, once its outcome is known: `call` names
   * it (`ws orders:watch`, `graphql subscription OnOrder.orderAdded`, `rpc Orders.find`); `status`
   * is the HTTP status the answer would have had (200 when admitted, 429 `rate_limited` when a rate
   * limiter answered), `reason` the denial code.
   */
  recordCall(call: string, agent: AgentContext | undefined, status = 200, reason?: DenialReason): void {
    const space = call.indexOf(' ');
    this.write(agent, call.slice(0, space).toUpperCase(), call.slice(space + 1), status, performance.now(), reason);
  }

  private write(agent: AgentContext | undefined, method: string, route: string, status: number, started: number, reason: string | undefined): void {
    // Claims and call names are the client's: capped, so a 100 KB `sub` is not a 100 KB record.
    const record: AuditRecord = {
      event: 'keycard.audit',
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
    };
    this.options.logger.log(new AuditLine(record));
  }
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
