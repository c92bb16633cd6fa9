import { type ExecutionContext, Inject, Injectable, Optional } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { checkRequestLogger } from '../logging/request-logger-check.js';
import { McpTools } from '../mcp/mcp-tools.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import {
  type DenialReason, InsufficientScopeException, type KeycardException, MissingCredentialsException,
} from '../resource-server/keycard.exceptions.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import { peekRequestState, requestState } from '../resource-server/request-state.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import { TokenVerifier } from '../resource-server/token-verifier.js';
import { Call } from './call.js';
import { challengeHeaders } from './challenge.js';
import { DecisionEvents } from './decision-events.js';
import { decisionEvent } from './decision-event.factory.js';
import { defaultJudge, type Judge } from './judge.js';
import { ScopePolicy } from './scope-policy.js';
import { KEYCARD_TOKEN_VALIDATORS, type TokenValidator } from './token-validator.js';

/**
 * Counts one refusal of the call in `context`. Resolves with `undefined` when the client may still
 * be refused normally, or with the error to answer instead (e.g. `ThrottlerException`, 429, or the
 * context's own 429 refusal outside HTTP); rejects only when the limiter itself failed.
 */
export type RefusalLimiter = (context: ExecutionContext) => Promise<unknown>;

/**
 * The one place a call is decided, whatever door it came through (SPEC §12, STYLE 23–26): a
 * {@link Call} is built once; verification (the verified-token cache, else the passport-jwt
 * strategy's header, zone, key, signature and claim stages) and then the {@link TokenValidator}s
 * establish the agent; the {@link ScopePolicy} judges it; the call's kind answers a refusal in its
 * own shape; every decision is published once as a {@link DecisionEvent}. `KeycardGuard` and the
 * throttler integration both ask it; neither knows the other.
 *
 * Answers synchronously when the token was verified before, so the common case costs no promise.
 */
@Injectable()
export class DecisionCore {
  private readonly policy: ScopePolicy;
  private readonly judge: Judge;
  private refusalLimiter?: RefusalLimiter;
  /** Calls whose final outcome a later judge publishes ({@link decideProvisionally}): the admitted call once known. */
  private readonly provisional = new WeakMap<ExecutionContext, Call | null>();
  /** Whether the request loggers were looked at for tokens (at the first token: INV7). */
  private requestLoggerChecked = false;

  constructor(
    private readonly contexts: KeycardContexts,
    private readonly verifier: TokenVerifier,
    private readonly routeRules: RouteRulesRegistry,
    private readonly mcp: McpTools,
    private readonly events: DecisionEvents,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Optional() @Inject(KEYCARD_TOKEN_VALIDATORS) private readonly validators: readonly TokenValidator[] = [],
  ) {
    this.policy = new ScopePolicy(mcp);
    this.judge = defaultJudge(options.logger);
  }

  /**
   * Decides the call in `context` with `judge`'s hooks (default: the core's own).
   * @returns `true` when admitted (the agent is on the call's carrier); `false` for a context type
   *   the module cannot judge.
   * @throws the refusal in the call's own shape (an `HttpException` with the RFC 6750 challenge, a
   *   GraphQL error, a `WsException`, an `RpcException`), or rejects with it.
   */
  decide(context: ExecutionContext, judge: Judge = this.judge): boolean | Promise<boolean> {
    const kind = this.contexts.kindOf(context);
    const rules = this.routeRules.rulesFor(context.getHandler(), context.getClass());
    if (rules.isPublic) return kind === undefined || !this.events.active ? true : this.admitPublic(Call.of(kind, context, rules));
    if (kind === undefined) return this.contexts.refuseUnsupported(context);
    const call = Call.of(kind, context, rules);
    if (this.events.active) call.started = performance.now();
    if (kind.sharedCarrier ? judge.admittedCalls.has(context.getArgs()) : isVerifiedAgent(call.carrier.user)) return this.rejudge(call, judge);
    return this.verifyAndJudge(call, judge);
  }

  /**
   * {@link decide}, for a judge that may still refuse the call afterwards (the throttler's 429):
   * the admission's event is not final, and {@link conclude} publishes the call's final outcome.
   */
  decideProvisionally(context: ExecutionContext): boolean | Promise<boolean> {
    if (this.events.active) this.provisional.set(context, null);
    return this.decide(context);
  }

  /**
   * Publishes the final outcome of a call decided by {@link decideProvisionally}: `status` 200
   * when served, else the later judge's refusal (429 `rate_limited`). A call admitted in an earlier
   * run (its admission was final) gets an event only for a refusal.
   */
  conclude(context: ExecutionContext, status: number, reason?: DenialReason): void {
    if (!this.events.active) return;
    const held = this.provisional.get(context);
    const wasHeld = this.provisional.delete(context);
    if ((!wasHeld || held === null) && status < 400) return;
    const kind = this.contexts.kindOf(context);
    if (kind === undefined) return;
    const call = held ?? Call.of(kind, context, this.routeRules.rulesFor(context.getHandler(), context.getClass()));
    const agent = held?.agent ?? (isVerifiedAgent(call.carrier.user) ? call.carrier.user : undefined);
    this.events.publish(decisionEvent(call, { status, detail: reason, agent, final: true }));
  }

  /**
   * Has every refusal counted by `limiter` before it is answered (catalogue M19): the throttler
   * integration registers itself here, so forged and missing tokens are rate-limited per client
   * address whichever guard Nest runs first. The core never imports a rate limiter. The last
   * registration wins.
   * @internal
   */
  limitRefusalsWith(limiter: RefusalLimiter): void {
    this.refusalLimiter = limiter;
  }

  /**
   * A call already judged (the throttler integration ran the core first): only the core puts a
   * VerifiedAgent on the carrier, after every check passed. A second guard (an app's
   * `KeycardGuard` subclass) still judges the scopes with its own hook, so a stricter subclass
   * running after the module's guard is never skipped.
   */
  private rejudge(call: Call, judge: Judge): true | Promise<never> {
    const { rules, carrier } = call;
    if (call.kind.sharedCarrier || rules.scopes === undefined) return true;
    const agent = carrier.user as AgentContext;
    if (judge.hasScopes(agent, rules.scopes)) return true;
    try {
      call.agent = agent;
      call.resource = this.resourceOf(call, call.kind.httpRequest(call.context, carrier));
      requestState(carrier).agent = agent;
      throw new InsufficientScopeException(rules.scopes);
    } catch (error) {
      return this.refuse(call, judge, error);
    }
  }

  /**
   * No exception for preflight-shaped OPTIONS (catalogue Q14, M10): a preflight the app's CORS
   * layer answers never reaches a guard, and one that reaches a handler is judged like any request.
   */
  private verifyAndJudge(call: Call, judge: Judge): true | Promise<true> {
    const { kind, context, carrier } = call;
    const raw = kind.httpRequest(context, carrier);
    // The agent the connection opened with: a message refused because its token expired names it (log, audit).
    const opened = call.isConnection ? kind.connectionAgent(carrier) : undefined;
    try {
      if (opened !== undefined) {
        call.agent = opened;
        return this.admit(call, judge, this.contexts.stillValid(opened));
      }
      call.resource = this.resourceOf(call, raw);
      call.token = kind.token(context, carrier);
      if (call.token === undefined) return this.anonymous(call);
      this.checkRequestLoggerOnce(call, raw);
      const agent = this.verify(call);
      if (!(agent instanceof Promise)) return this.admit(call, judge, agent);
      return agent.then(
        (verified) => this.admitOrRefuse(call, judge, verified),
        (error: unknown) => this.refuse(call, judge, error),
      );
    } catch (error) {
      return this.refuse(call, judge, error);
    }
  }

  /** A call without a token: N12, a `@Public()` mcp-nest tool, is served; anything else is refused. */
  private anonymous(call: Call): true {
    const { rules, carrier } = call;
    if (rules.mcp !== undefined && this.mcp.toolOf((carrier as { body?: unknown }).body)?.isPublic === true) {
      return this.events.active ? this.admitPublic(call) : true;
    }
    throw new MissingCredentialsException();
  }

  /** Fields of one GraphQL operation share the request: one verification of its token, not one per field. */
  private verify(call: Call): AgentContext | Promise<AgentContext> {
    const { carrier } = call;
    const token = call.token!;
    const resource = call.resource!;
    const shared = call.kind.sharedCarrier && !call.isConnection;
    const pending = shared ? peekRequestState(carrier)?.verifying : undefined;
    if (pending !== undefined && pending.token === token && pending.resource === resource) {
      call.repeated = true;
      return pending.result;
    }
    const agent = this.verifier.verify(token, resource);
    if (agent instanceof Promise && shared) requestState(carrier).verifying = { token, resource, result: agent };
    return agent;
  }

  /**
   * The resource that judges this call: the route's own (fixed at bootstrap), else the one the
   * matched path decides; calls without an HTTP request (gRPC, TCP) get the first configured one.
   * @throws InvalidRequestException / ResourceNotConfiguredException, as the resolver does.
   */
  private resourceOf(call: Call, raw: IncomingMessage | undefined): ProtectedResource {
    const { rules } = call;
    return rules.resource ?? (raw === undefined ? this.contexts.resourceFor(undefined) : this.routeRules.resourceFor(rules, call.carrier, raw));
  }

  /** Once, at the first token answered over HTTP (pino-http binds its loggers to those requests only). */
  private checkRequestLoggerOnce(call: Call, raw: IncomingMessage | undefined): void {
    if (this.requestLoggerChecked || raw === undefined || !call.answeredOverHttp) return;
    this.requestLoggerChecked = true;
    checkRequestLogger(raw, call.token!, this.options.logger);
  }

  private admitOrRefuse(call: Call, judge: Judge, agent: AgentContext): true | Promise<never> {
    try {
      return this.admit(call, judge, agent);
    } catch (error) {
      return this.refuse(call, judge, error);
    }
  }

  /**
   * Runs the validators, then the policy (only now: INV5), then hands the agent to the handler.
   * On an MCP endpoint the transport gets what it reads (N11, N12).
   * @throws the validator's refusal, or InsufficientScopeException.
   */
  private admit(call: Call, judge: Judge, agent: AgentContext): true {
    call.agent = agent;
    const { validators } = this;
    for (let i = 0; i < validators.length; i++) validators[i]!.validate(agent, call);
    const unmet = this.policy.unmet(call, agent, judge);
    const { kind, context, carrier, rules } = call;
    if (unmet !== undefined) {
      requestState(carrier).agent = agent; // for the denial's audit line over HTTP
      throw new InsufficientScopeException(unmet);
    }
    if (rules.mcp !== undefined && call.token !== undefined && call.resource !== undefined) {
      this.mcp.admitted(carrier as Record<PropertyKey, unknown>, rawRequestOf(carrier), rules.mcp, agent, call.token, call.resource);
    }
    carrier.user = agent;
    if (kind.sharedCarrier) judge.admittedCalls.add(context.getArgs());
    if (this.events.active) this.publishAdmission(call);
    return true;
  }

  private admitPublic(call: Call): true {
    this.events.publish(decisionEvent(call, { status: 200, public: true, final: !this.provisional.has(call.context) }));
    return true;
  }

  private publishAdmission(call: Call): void {
    const held = this.provisional.has(call.context);
    if (held) this.provisional.set(call.context, call); // the later judge publishes the final outcome
    this.events.publish(decisionEvent(call, { status: 200, agent: call.agent, final: !held }));
  }

  /**
   * Refuses the call for `error`; when a refusal limiter is registered the refusal is counted
   * first (no await otherwise), and a client over its limit gets the limiter's answer (429 in the
   * context's own kind) instead, without a challenge. Zone outages (5xx) are not the client's doing
   * and never count; a limiter that fails (its storage is down) leaves the refusal as it was.
   */
  private refuse(call: Call, judge: Judge, error: unknown): never | Promise<never> {
    const denial = this.contexts.toDenial(error);
    const limiter = this.refusalLimiter;
    if (limiter === undefined || denial.getStatus() >= 500) return this.deny(call, judge, denial);
    return limiter(call.context).then(
      (limited) => {
        if (limited === undefined) return this.deny(call, judge, denial);
        const state = requestState(call.carrier);
        if (this.events.active) {
          this.events.publish(decisionEvent(call, { status: 429, detail: 'rate_limited', agent: call.agent ?? state.agent, final: true }));
        }
        if (call.isConnection) state.agent = undefined; // as in deny: the next message is judged afresh
        throw limited;
      },
      (failure: unknown) => {
        // The limiter itself failed: still the refusal, never a 500.
        this.options.logger.error(`Refusal limiter failed: ${logSafe((failure as Error)?.name ?? typeof failure)}`);
        return this.deny(call, judge, denial);
      },
    );
  }

  /**
   * Makes `denial` the answer, of the context's own kind: challenge headers written where there is
   * an HTTP response, denial logged, published. Throws (or rejects, when the context's exception
   * class is loaded on first use).
   */
  private deny(call: Call, judge: Judge, denial: KeycardException): never | Promise<never> {
    const { kind, context, carrier, rules } = call;
    const state = requestState(carrier);
    const who = call.agent ?? state.agent;
    // One line per request: the fields of one GraphQL operation share its token, so a second refusal
    // (another field, 200 aliases lacking a scope) says nothing new. Connections are no request:
    // each message refused there is logged.
    const logged = call.repeated || (kind.sharedCarrier && state.denialLogged === true && !call.isConnection);
    state.denial = denial.code;
    if (!logged) {
      state.denialLogged = true;
      judge.logDenial(call.describe(), denial, who);
    }
    if (this.events.active) this.events.publish(decisionEvent(call, { status: denial.getStatus(), detail: denial.code, agent: who, final: true }));
    if (call.isConnection) state.agent = undefined; // the next message is judged afresh
    const headers = challengeHeaders(call, denial, this.options.realm);
    const refusal = kind.refuse(denial, context, carrier, headers, rules.scopeParam);
    if (refusal instanceof Promise) return refusal.then((e) => Promise.reject(e));
    throw refusal;
  }
}

