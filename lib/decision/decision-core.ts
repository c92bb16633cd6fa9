import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { McpTools } from '../mcp/mcp-tools.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import { AdmittedCalls } from '../resource-server/admitted-calls.js';
import { type DenialReason, InsufficientScopeException } from '../resource-server/keycard.exceptions.js';
import { requestState } from '../resource-server/request-state.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import { TokenVerifier } from '../resource-server/token-verifier.js';
import { Call } from './call.js';
import { DecisionEvents } from './decision-events.js';
import { defaultJudge, type Judge } from './judge.js';
import { type RefusalLimiter, Refusals } from './refusal.js';
import { ScopePolicy } from './scope-policy.js';
import { TokenValidators } from './token-validator.js';
import { ANONYMOUS, Verification } from './verification.js';

export type { RefusalLimiter } from './refusal.js';

/** A shared-carrier call the asking judge admitted itself earlier in the same call. */
const ADMITTED_BY_JUDGE = Symbol('keycard.admitted-by-judge');

/**
 * The one place a call is decided, whatever door it came through (SPEC §12, STYLE 23–26):
 *
 * 1. a {@link Call} is built once (its kind, context, carrier, rules);
 * 2. {@link Verification} establishes the agent: the verified-token cache, else the passport-jwt
 *    strategy's header, zone, key, signature and claim stages; then every {@link TokenValidator};
 * 3. the {@link ScopePolicy} judges the verified agent (INV5);
 * 4. the outcome is published once to the {@link DecisionEvents} subscribers (audit log,
 *    throttler, the app's own), and a refusal is answered in the call's own shape ({@link Refusals}).
 *
 * `KeycardGuard` and the throttler integration both ask it; neither knows the other. Answers
 * synchronously when the token was verified before, so the common case costs no promise.
 */
@Injectable()
export class DecisionCore {
  private readonly verification: Verification;
  private readonly policy: ScopePolicy;
  private readonly refusals: Refusals;
  private readonly judge: Judge;
  /** Calls whose final outcome a later judge publishes ({@link decideProvisionally}): the admitted call once known. */
  private readonly provisional = new WeakMap<ExecutionContext, Call | null>();

  constructor(
    private readonly contexts: KeycardContexts,
    verifier: TokenVerifier,
    private readonly routeRules: RouteRulesRegistry,
    private readonly mcp: McpTools,
    private readonly events: DecisionEvents,
    @Inject(KEYCARD_OPTIONS) options: KeycardOptions,
    validators: TokenValidators,
  ) {
    this.verification = new Verification({ contexts, verifier, routeRules, mcp, options, validators });
    this.policy = new ScopePolicy(mcp);
    this.refusals = new Refusals({ contexts, events, options });
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
    if (rules.mcp !== undefined) this.mcp.checkTransport(context); // Origin, then header–body: before any token work (Q30, Q31)
    if (rules.isPublic) return kind === undefined || !this.events.active ? true : this.admitPublic(Call.of(kind, context, rules));
    if (kind === undefined) return this.contexts.refuseUnsupported(context);
    const call = Call.of(kind, context, rules);
    // An MCP call's scopes come from its body (the tool's too), so a 401 names them all (U8, Q12).
    if (rules.mcp !== undefined) call.required = this.policy.required(call);
    if (this.events.active) call.started = performance.now();
    const earlier = this.earlierAdmission(call, judge);
    if (earlier === ADMITTED_BY_JUDGE) return true;
    if (earlier !== undefined) return this.rejudge(call, judge, earlier);
    try {
      const agent = this.verification.agentOf(call);
      if (agent === ANONYMOUS) return this.mcp.admittedAnonymous(call.carrier) && this.admitPublic(call);
      if (!(agent instanceof Promise)) return this.admit(call, judge, agent);
      return agent.then(
        (verified) => this.admitOrRefuse(call, judge, verified),
        (error: unknown) => this.refusals.refuse(call, judge, error),
      );
    } catch (error) {
      return this.refusals.refuse(call, judge, error);
    }
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
    this.events.decided(call, { status, detail: reason, agent });
  }

  /**
   * Has every refusal counted by `limiter` before it is answered (catalogue M19): the throttler
   * integration registers itself here, so forged and missing tokens are rate-limited per client
   * address whichever guard Nest runs first. The last registration wins.
   * @internal
   */
  limitRefusalsWith(limiter: RefusalLimiter): void {
    this.refusals.limiter = limiter;
  }

  /**
   * The admission of a call already judged (the throttler integration ran the core first): only
   * the core puts a VerifiedAgent on a carrier, after every check passed. Where several calls share
   * the carrier (GraphQL fields, socket messages) it is the call's argument list that holds the
   * admission. Returns {@link ADMITTED_BY_JUDGE} when `judge` admitted it already, the call to judge
   * again when another judge did (or the carrier holds a verified agent), `undefined` when it is to
   * be verified.
   */
  private earlierAdmission(call: Call, judge: Judge): Call | typeof ADMITTED_BY_JUDGE | undefined {
    if (!call.kind.sharedCarrier) return isVerifiedAgent(call.carrier.user) ? call : undefined;
    const args = call.context.getArgs();
    if (judge.admittedCalls.has(args)) return ADMITTED_BY_JUDGE;
    return AdmittedCalls.admissionOf<Call>(args);
  }

  /**
   * Judges again, with `judge`'s own hook, what another judge admitted in this call (`earlier`),
   * or on a carrier that is not shared, what the carrier holds: a stricter `KeycardGuard` subclass
   * running after the module's guard is never skipped. Publishes nothing more when admitted.
   */
  private rejudge(call: Call, judge: Judge, earlier: Call): true | Promise<never> {
    const { carrier } = call;
    const shared = call.kind.sharedCarrier;
    const agent = shared ? earlier.agent! : (carrier.user as AgentContext);
    const required = shared ? earlier.required : call.rules.scopes;
    if (required === undefined || judge.hasScopes(agent, required)) {
      if (shared) judge.admittedCalls.add(call.context.getArgs(), earlier);
      return true;
    }
    try {
      call.agent = agent;
      call.resource = this.verification.resourceOf(call, call.kind.httpRequest(call.context, carrier));
      requestState(carrier).agent = agent;
      throw new InsufficientScopeException(required);
    } catch (error) {
      return this.refusals.refuse(call, judge, error);
    }
  }

  private admitOrRefuse(call: Call, judge: Judge, agent: AgentContext): true | Promise<never> {
    try {
      return this.admit(call, judge, agent);
    } catch (error) {
      return this.refusals.refuse(call, judge, error);
    }
  }

  /**
   * Judges the verified agent with the policy (only now: INV5), then hands it to the handler. On
   * an MCP endpoint the transport gets what it reads (N11, N12).
   * @throws InsufficientScopeException.
   */
  private admit(call: Call, judge: Judge, agent: AgentContext): true {
    const unmet = this.policy.unmet(call, agent, judge);
    const { kind, context, carrier, rules } = call;
    if (unmet !== undefined) {
      requestState(carrier).agent = agent; // for the denial's audit line over HTTP
      throw new InsufficientScopeException(unmet);
    }
    if (rules.mcp !== undefined && call.token !== undefined && call.resource !== undefined) {
      this.mcp.admitted({ request: carrier, response: kind.httpResponse(context, carrier), rule: rules.mcp, agent, token: call.token, resource: call.resource });
    }
    // Published before the agent is handed over, so nothing a subscriber writes on the carrier survives.
    if (this.events.active) this.publishAdmission(call);
    carrier.user = agent;
    if (kind.sharedCarrier) judge.admittedCalls.add(context.getArgs(), call);
    return true;
  }

  private admitPublic(call: Call): true {
    this.events.decided(call, { status: 200, public: true, final: !this.provisional.has(call.context) });
    return true;
  }

  private publishAdmission(call: Call): void {
    const held = this.provisional.has(call.context);
    if (held) this.provisional.set(call.context, call); // the later judge publishes the final outcome
    this.events.decided(call, { status: 200, agent: call.agent, final: !held });
  }
}
