import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import type { ServerResponse } from 'node:http';
import { isVerifiedAgent } from './access-token-rules.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
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
  method: string;
  route: string;
  status: number;
  durationMs: number;
  /** Why the request was refused (401/403/429/503), as a stable code. */
  reason?: string;
}

/**
 * Writes one structured line per request when `auditLog` is on, once the response is finished, so
 * denials by the guard or a rate limiter (which no interceptor sees) are recorded too. Goes to the
 * module's logger (Nest's `Logger` by default, so nestjs-pino and friends pick it up).
 */
@Injectable()
export class AuditTrail {
  constructor(@Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions) {}

  /** Arranges the audit line of the request in `context` (once per request). */
  track(context: ExecutionContext): void {
    const http = context.switchToHttp();
    const request = http.getRequest<object & { user?: AgentContext }>();
    const state = requestState(request);
    if (state.audited) return;
    state.audited = true;
    const response = http.getResponse<object>();
    const raw = ((response as { raw?: ServerResponse }).raw ?? response) as ServerResponse;
    const method = rawRequestOf(request).method ?? 'GET';
    const route = routeOf(context);
    const started = performance.now();
    raw.once('finish', () => {
      const agent = isVerifiedAgent(request.user) ? request.user : state.agent;
      const record: AuditRecord = {
        event: 'keycard.audit',
        agent: agent?.clientId,
        user: agent?.subject,
        session: agent?.sessionId,
        scopes: agent?.scopes,
        tokenId: agent?.tokenId,
        method,
        route,
        status: raw.statusCode,
        durationMs: Math.round((performance.now() - started) * 100) / 100,
        reason: state.denial ?? (raw.statusCode === 429 ? 'rate_limited' : undefined),
      };
      this.options.logger.log(JSON.stringify(record));
    });
  }
}

/** The route pattern (`/orders/:id`), not the request path: no ids or query strings in the logs. */
function routeOf(context: ExecutionContext): string {
  const join = (...parts: (string | string[] | undefined)[]) =>
    '/' + parts.map((p) => (Array.isArray(p) ? p[0] : p) ?? '').map((p) => p.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/');
  return join(
    Reflect.getMetadata(PATH_METADATA, context.getClass()) as string | string[] | undefined,
    Reflect.getMetadata(PATH_METADATA, context.getHandler()) as string | string[] | undefined,
  );
}
