import {
  type CanActivate, type ExecutionContext, Inject, Injectable,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import { isVerifiedAgent } from './access-token-rules.js';
import { AdmittedCalls } from './admitted-calls.js';
import { AuditTrail } from './audit-trail.js';
import { logSafe } from '../logging/log-safe.js';
import { checkRequestLogger } from '../logging/request-logger-check.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import {
  type DenialReason, InsufficientScopeException, type KeycardException, MissingCredentialsException,
} from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { ProtectedResource } from './protected-resource.js';
import { peekRequestState, requestState } from './request-state.js';
import { type RouteRules, RouteRulesRegistry } from './route-rules.registry.js';
import { TokenVerifier } from './token-verifier.js';
import { McpTools } from '../mcp/mcp-tools.js';

/**
 * The global guard `KeycardModule` binds with `APP_GUARD`. Every route, resolver, gateway message
 * and microservice handler needs a valid zone access token for this API unless it is `@Public()`;
 * `@RequireScopes()` adds scopes. On success the call's request (`request.user`) holds the
 * {@link AgentContext}; on refusal an HTTP response carries the RFC 6750 / RFC 9728 challenge and a
 * JSON `{ error, error_description }` body, and other contexts get their own kind of error
 * (catalogue §N: GraphQL errors, WebSocket `exception` events, `RpcException`s, mcp-nest tool errors).
 *
 * Extend it and override the `protected` hooks to change what is logged or how scopes are judged;
 * provide your subclass as `KeycardGuard` (`overrideProvider(KeycardGuard)` in tests).
 *
 * @throws MissingCredentialsException 401 without an error code: no bearer token.
 * @throws InvalidTokenException 401 `invalid_token`: malformed, forged, expired or foreign token.
 * @throws InvalidRequestException 400 `invalid_request`: more than one token.
 * @throws InsufficientScopeException 403 `insufficient_scope`.
 * @throws ZoneUnavailableException 503 + `Retry-After`: the zone's metadata or keys are unreachable.
 * @publicApi
 */
@Injectable()
export class KeycardGuard implements CanActivate {
  constructor(
    protected readonly reflector: Reflector,
    protected readonly contexts: KeycardContexts,
    protected readonly verifier: TokenVerifier,
    protected readonly audit: AuditTrail,
    @Inject(KEYCARD_OPTIONS) protected readonly options: KeycardOptions,
    protected readonly routeRules: RouteRulesRegistry,
    protected readonly mcp: McpTools,
  ) {}
  /** Calls on shared carriers already admitted (their argument lists), for the same reason as `request.user` below. */
  private readonly admittedCalls = new AdmittedCalls();

  private refusalLimiter?: RefusalLimiter;
  /**
   * Calls outside HTTP whose audit line waits for the guard that runs this one (the throttler
   * integration may still answer 429 after this guard admitted the call): `null` until admitted,
   * then the agent. Keyed by the call's `ExecutionContext`, which Nest builds for each call and
   * hands to every guard of it. Empty unless `auditLog` is on.
   */
  private readonly heldAudits = new WeakMap<ExecutionContext, AgentContext | null>();
  /** Whether the request loggers were looked at for tokens (at the first token: INV7). */
  private requestLoggerChecked = false;

  /**
   * Has every refusal of this guard counted by `limiter` before it is answered (catalogue M19):
   * `nestjs-keycard/throttler` registers itself here, so forged and missing tokens are
   * rate-limited per client address whichever guard Nest runs first. The core never imports a
   * rate limiter. The last registration wins.
   * @internal
   */
  limitRefusalsWith(limiter: RefusalLimiter): void {
    this.refusalLimiter = limiter;
  }

  /**
   * Says that a guard running this one will judge the call in `context` after it (the throttler
   * integration, which may answer 429 per agent): outside HTTP, where the audit line is written at
   * the decision, an admission is then not written but held for {@link settleAudit}, so the call
   * gets one line with its final outcome. Refusals are written as usual. Nothing without `auditLog`.
   * @internal
   */
  holdAudit(context: ExecutionContext): void {
    if (!this.options.auditLog) return;
    const kind = this.contexts.kindOf(context);
    if (kind !== undefined && this.auditsAtDecision(kind, context, kind.carrier(context))) this.heldAudits.set(context, null);
  }

  /**
   * Writes the audit line held by {@link holdAudit} with the call's final outcome (`status`, 200
   * when served). A call this guard admitted in an earlier run (it ran before the throttler), or a
   * public one, has no line held: only a refusal (`status` ≥ 400) is written for it then, so such an
   * admitted call has two lines, the admission and the refusal (README, "Audit log").
   * @internal
   */
  settleAudit(context: ExecutionContext, status: number, reason?: DenialReason): void {
    if (!this.heldAudits.has(context)) {
      if (status >= 400 && this.options.auditLog) this.noteRefusedOverHttp(context, reason);
      return;
    }
    const admitted = this.heldAudits.get(context) ?? undefined;
    this.heldAudits.delete(context);
    if (admitted === undefined && status < 400) return;
    const kind = this.contexts.kindOf(context)!;
    const carrier = kind.carrier(context);
    const agent = admitted ?? (isVerifiedAgent(carrier.user) ? carrier.user : undefined);
    this.audit.recordCall(kind.describe(context, carrier), agent, status, reason, context);
  }

  /**
   * A call refused after this guard admitted it (the throttler's 429) that shares its HTTP request
   * with other calls (a GraphQL field): the request's one audit record, written when the response
   * is finished, lists it among the refused fields and gives its reason when no other was noted.
   */
  private noteRefusedOverHttp(context: ExecutionContext, reason: DenialReason | undefined): void {
    const kind = this.contexts.kindOf(context);
    if (kind === undefined || !kind.sharedCarrier) return;
    const carrier = kind.carrier(context);
    if (kind.httpResponse(context, carrier) === undefined) return;
    this.audit.noteRefused(context, kind, carrier);
    requestState(carrier).denial ??= reason;
  }

  /**
   * Answers synchronously when the token was verified before (the verified-token cache), so the
   * common case costs no promise; verifies through the passport-jwt strategy otherwise. Any context
   * type: the context layer (`lib/contexts/`) says where the token is and how a refusal travels.
   */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const kind = this.contexts.kindOf(context);
    if (this.options.auditLog && kind !== undefined) this.audit.track(context, kind);
    const rules = this.routeRules.rulesFor(context.getHandler(), context.getClass());
    if (rules.isPublic) return true;
    if (kind === undefined) return this.contexts.refuseUnsupported(context);
    const carrier = kind.carrier(context);
    const connection = kind.isConnection(carrier);
    // Already judged in this call (the throttler integration runs this guard first): only this guard
    // puts a VerifiedAgent on request.user, and only after every check passed. Where several calls
    // share the carrier (GraphQL fields, socket messages), it is the call's argument list that was admitted.
    if (kind.sharedCarrier ? this.admittedCalls.has(context.getArgs()) : isVerifiedAgent(carrier.user)) {
      // A second guard (an app's KeycardGuard subclass bound with APP_GUARD) still judges the scopes
      // with its own hook: a stricter subclass running after the module's guard is never skipped.
      return kind.sharedCarrier || rules.scopes === undefined || this.hasScopes(carrier.user as AgentContext, rules.scopes)
        ? true
        : this.refuseScopes(kind, context, carrier, carrier.user as AgentContext, rules);
    }
    // No exception for preflight-shaped OPTIONS (catalogue Q14, M10): a preflight the app's CORS
    // layer answers never reaches a guard, and one that reaches a handler is judged like any request.
    const raw = kind.httpRequest(context, carrier);
    let resource: ProtectedResource | undefined;
    // The agent the connection opened with: a message refused because its token expired names it (log, audit).
    const opened = connection ? kind.connectionAgent(carrier) : undefined;
    try {
      if (opened !== undefined) return this.admit(kind, context, carrier, this.contexts.stillValid(opened), rules);
      resource = this.resourceOf(rules, carrier, raw);
      const token = kind.token(context, carrier);
      if (token === undefined) {
        // N12: a @Public() mcp-nest tool is called without a token; the rest of the endpoint is not.
        if (rules.mcp !== undefined && this.mcp.toolOf((carrier as { body?: unknown }).body)?.isPublic === true) return this.mcp.admittedAnonymous(carrier);
        throw new MissingCredentialsException();
      }
      // Once, at the first token answered over HTTP (pino-http binds its loggers to those requests only).
      if (!this.requestLoggerChecked && raw !== undefined && kind.httpResponse(context, carrier) !== undefined) {
        this.requestLoggerChecked = true;
        checkRequestLogger(raw, token, this.options.logger);
      }
      // Fields of one GraphQL operation share the request: one verification of its token, not one per field.
      const pending = kind.sharedCarrier && !connection ? peekRequestState(carrier)?.verifying : undefined;
      const repeated = pending !== undefined && pending.token === token && pending.resource === resource;
      const agent = repeated ? pending.result : this.verifier.verify(token, resource);
      if (!(agent instanceof Promise)) return this.admit(kind, context, carrier, agent, rules, token, resource);
      if (!repeated && kind.sharedCarrier && !connection) requestState(carrier).verifying = { token, resource, result: agent };
      const known = resource;
      return agent.then(
        (verified) => this.admitOrDeny(kind, context, carrier, verified, rules, known, token),
        (error: unknown) => this.refuse(error, kind, context, carrier, known, undefined, rules, repeated),
      );
    } catch (error) {
      return this.refuse(error, kind, context, carrier, resource, opened, rules);
    }
  }

  /**
   * The resource that judges this call: the route's own (fixed at bootstrap), else the one the
   * matched path decides; calls without an HTTP request (gRPC, TCP) get the first configured one.
   * @throws InvalidRequestException / ResourceNotConfiguredException, as the resolver does.
   */
  private resourceOf(rules: RouteRules, carrier: Carrier, raw: IncomingMessage | undefined): ProtectedResource {
    return rules.resource ?? (raw === undefined ? this.contexts.resourceFor(undefined) : this.routeRules.resourceFor(rules, carrier, raw));
  }

  /** Refuses an agent verified earlier in this call that this guard's `hasScopes` does not admit. */
  private refuseScopes(kind: CallKind, context: ExecutionContext, carrier: Carrier, agent: AgentContext, rules: RouteRules): never | Promise<never> {
    const raw = kind.httpRequest(context, carrier);
    let resource: ProtectedResource | undefined;
    try {
      resource = this.resourceOf(rules, carrier, raw);
      requestState(carrier).agent = agent;
      throw new InsufficientScopeException(rules.scopes!);
    } catch (error) {
      return this.refuse(error, kind, context, carrier, resource, agent, rules);
    }
  }

  private admitOrDeny(
    kind: CallKind,
    context: ExecutionContext,
    carrier: Carrier,
    agent: AgentContext,
    rules: RouteRules,
    resource: ProtectedResource,
    token: string,
  ): true | Promise<never> {
    try {
      return this.admit(kind, context, carrier, agent, rules, token, resource);
    } catch (error) {
      return this.refuse(error, kind, context, carrier, resource, agent, rules);
    }
  }

  /**
   * Hands the agent to the handler when it holds every required scope (checked only now: INV5). On
   * an MCP endpoint (`rules.mcp`, an HTTP request verified here with `token` for `resource`) a
   * `tools/call` also needs the tool's scopes, and the MCP transport gets what it reads (N11, N12).
   */
  private admit(
    kind: CallKind,
    context: ExecutionContext,
    carrier: Carrier,
    agent: AgentContext,
    rules: RouteRules,
    token?: string,
    resource?: ProtectedResource,
  ): true {
    const scopes = rules.mcp === undefined ? rules.scopes : this.mcp.requiredScopes(rules.scopes, (carrier as { body?: unknown }).body);
    if (scopes !== undefined && !this.hasScopes(agent, scopes)) {
      requestState(carrier).agent = agent; // for the denial's log and audit lines
      throw new InsufficientScopeException(scopes);
    }
    if (rules.mcp !== undefined && token !== undefined && resource !== undefined) {
      this.mcp.admitted({ request: carrier, response: kind.httpResponse(context, carrier), rule: rules.mcp, agent, token, resource });
    }
    carrier.user = agent;
    if (kind.sharedCarrier) this.admittedCalls.add(context.getArgs());
    if (this.auditsAtDecision(kind, context, carrier)) {
      if (this.heldAudits.has(context)) this.heldAudits.set(context, agent); // the throttler writes it: 200 or 429
      else this.audit.recordCall(kind.describe(context, carrier), agent, 200, undefined, context);
    }
    return true;
  }

  /**
   * Refuses the call for `error`; when a refusal limiter is registered the refusal is counted
   * first (no await otherwise), and a client over its limit gets the limiter's answer (429 in the
   * context's own kind) instead, without a challenge. Zone outages (5xx) are not the client's doing
   * and never count; a limiter that fails (its storage is down) leaves the refusal as it was.
   */
  private refuse(
    error: unknown,
    kind: CallKind,
    context: ExecutionContext,
    carrier: Carrier,
    resource: ProtectedResource | undefined,
    agent: AgentContext | undefined,
    rules: RouteRules,
    repeated = false,
  ): never | Promise<never> {
    const denial = this.contexts.toDenial(error);
    const limiter = this.refusalLimiter;
    if (limiter === undefined || denial.getStatus() >= 500) return this.deny(denial, kind, context, carrier, resource, agent, rules, repeated);
    return limiter(context).then(
      (limited) => {
        if (limited === undefined) return this.deny(denial, kind, context, carrier, resource, agent, rules, repeated);
        // Over HTTP the line is written when the response is finished; elsewhere now, as deny would have.
        this.auditRefusal(kind, context, carrier, agent ?? peekRequestState(carrier)?.agent, 429, 'rate_limited');
        if (kind.isConnection(carrier)) requestState(carrier).agent = undefined; // as in deny: the next message is judged afresh
        throw limited;
      },
      (failure: unknown) => {
        // The limiter itself failed: still the refusal, never a 500.
        this.options.logger.error(`Refusal limiter failed: ${logSafe((failure as Error)?.name ?? typeof failure)}`);
        return this.deny(denial, kind, context, carrier, resource, agent, rules, repeated);
      },
    );
  }

  /**
   * Makes `denial` the answer, of the context's own kind: challenge headers written where there is
   * an HTTP response, denial logged and remembered for the audit line. Throws (or rejects, when the
   * context's exception class is loaded on first use).
   */
  private deny(
    denial: KeycardException,
    kind: CallKind,
    context: ExecutionContext,
    carrier: Carrier,
    resource: ProtectedResource | undefined,
    agent: AgentContext | undefined,
    rules: RouteRules,
    repeated = false,
  ): never | Promise<never> {
    const state = requestState(carrier);
    const who = agent ?? state.agent;
    const call = kind.describe(context, carrier);
    // One line per request: the fields of one GraphQL operation share its token, so a second refusal
    // (another field, 200 aliases lacking a scope) says nothing new; the audit record lists them all.
    // Connections are no request: each message refused there is logged.
    const logged = repeated || (kind.sharedCarrier && state.denialLogged === true && !kind.isConnection(carrier));
    state.denial = denial.code;
    if (!logged) {
      state.denialLogged = true;
      this.logDenial(call, denial, who);
    }
    this.auditRefusal(kind, context, carrier, who, denial.getStatus(), denial.code);
    if (kind.isConnection(carrier)) state.agent = undefined; // the next message is judged afresh
    const headers = this.challengeHeaders(denial, kind, carrier, resource, rules);
    const refusal = kind.refuse(denial, context, carrier, headers, rules.scopeParam);
    if (refusal instanceof Promise) return refusal.then((e) => Promise.reject(e));
    throw refusal;
  }

  /**
   * The refusal's headers (the RFC 6750 challenge). Where several calls share one HTTP response (the
   * fields of a GraphQL operation, MCP tool calls), each refusal writes the challenge again, so it
   * names every scope refused in the request so far, not only the last field's: a client that steps
   * up asks once for all it needs (RFC 6750 §3: the scope necessary to access the resource).
   */
  private challengeHeaders(
    denial: KeycardException,
    kind: CallKind,
    carrier: Carrier,
    resource: ProtectedResource | undefined,
    rules: RouteRules,
  ): Record<string, string> {
    const prm = resource?.metadataUrl;
    if (!kind.sharedCarrier || kind.isConnection(carrier)) return denial.headers(prm, this.options.realm, rules.scopeParam);
    const named = (requestState(carrier).challengeScopes ??= new Set());
    for (const scope of denial.scopeNamed(rules.scopeParam)?.split(' ') ?? []) named.add(scope);
    if (denial instanceof InsufficientScopeException) return new InsufficientScopeException([...named]).headers(prm, this.options.realm);
    return denial.headers(prm, this.options.realm, named.size > 0 ? [...named].join(' ') : undefined);
  }

  /**
   * The audit of a refused call: outside HTTP its own record, now; over HTTP the request's record
   * (written when the response is finished) has the status, and names the call among its refused
   * ones where several calls share the request.
   */
  private auditRefusal(kind: CallKind, context: ExecutionContext, carrier: Carrier, agent: AgentContext | undefined, status: number, reason: DenialReason): void {
    if (!this.options.auditLog) return;
    if (kind.httpResponse(context, carrier) === undefined) this.audit.recordCall(kind.describe(context, carrier), agent, status, reason, context);
    else this.audit.noteRefused(context, kind, carrier);
  }

  /** Calls answered outside HTTP (gateways, graphql-ws, microservices) are audited when decided. */
  private auditsAtDecision(kind: CallKind, context: ExecutionContext, carrier: Carrier): boolean {
    return this.options.auditLog && kind.httpResponse(context, carrier) === undefined;
  }

  /** All-of, exact and case-sensitive match (catalogue D1–D9). */
  protected hasScopes(agent: AgentContext, required: readonly string[]): boolean {
    return required.every((scope) => agent.scopes.includes(scope));
  }

  /**
   * Logs a refusal with its reason, the call (`GET /orders`, `graphql query Orders.orders`) and the
   * agent when known; never the token. The call and the claims are the client's words: escaped and
   * capped ({@link logSafe}), so they cannot add a line or drive the terminal (CWE-117).
   */
  protected logDenial(call: string, denial: KeycardException, agent: AgentContext | undefined): void {
    const who = agent ? ` agent=${logSafe(agent.clientId)} user=${logSafe(agent.subject)} jti=${logSafe(agent.tokenId)}` : '';
    const line = `denied ${logSafe(call)} status=${denial.getStatus()} reason=${denial.code}${who}`;
    if (denial.getStatus() >= 500) this.options.logger.error(line);
    else if (denial.code === 'no_credentials') this.options.logger.debug?.(line);
    else this.options.logger.warn(line);
  }
}

/**
 * Counts one refusal of the call in `context`. Resolves with `undefined` when the client may still
 * be refused normally, or with the error to answer instead (e.g. `ThrottlerException`, 429, or the
 * context's own 429 refusal outside HTTP); rejects only when the limiter itself failed.
 */
export type RefusalLimiter = (context: ExecutionContext) => Promise<unknown>;
