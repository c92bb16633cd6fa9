import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import type { DenialReason } from '../resource-server/keycard.exceptions.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import { TokenVerifier } from '../resource-server/token-verifier.js';
import { Admissions } from './admissions.js';
import { DecisionEvents } from './decision-events.js';
import { defaultJudge, type Judge } from './judge.js';
import { type RefusalLimiter, Refusals } from './refusal.js';
import { AuthorizationPolicy } from './authorization-policy.js';
import { TokenValidators } from './token-validator.js';
import { Verification } from './verification.js';

export type { RefusalLimiter } from './refusal.js';

/**
 * The one place a call is decided, whatever door it came through (SPEC §12, STYLE 23–26):
 *
 * 1. the door builds a {@link Call} once (its kind, context, carrier, rules and, on an MCP endpoint,
 *    the operation its body names: `KeycardContexts.callOf`); a call its endpoint's transport
 *    checks refused is answered at once (Q30, Q31);
 * 2. {@link Verification} establishes the agent: none for a `@Public()` route, an earlier judge's
 *    admission of the same call, the verified-token cache, else the passport-jwt strategy's header,
 *    zone, key, signature and claim stages; then every {@link TokenValidator};
 * 3. {@link Admissions}: the {@link AuthorizationPolicy} judges the verified agent (INV5), the admission is
 *    published once to the {@link DecisionEvents} subscribers (audit log, throttler, the app's own)
 *    and the agent handed to the handler;
 * 4. or {@link Refusals}: a refusal is published and answered in the call's own shape.
 *
 * Each step is one call from {@link DecisionCore.decide}, in that order; the core knows no door
 * (an MCP endpoint adds to the call as it is built: `rules.endpoint`, an `EndpointExtension`).
 *
 * `KeycardGuard` and the throttler integration both ask it; neither knows the other. Answers
 * synchronously when the token was verified before, so the common case costs no promise.
 */
@Injectable()
export class DecisionCore {
  private readonly verification: Verification;
  private readonly admissions: Admissions;
  private readonly refusals: Refusals;
  private readonly judge: Judge;

  constructor(
    private readonly contexts: KeycardContexts,
    verifier: TokenVerifier,
    routeRules: RouteRulesRegistry,
    private readonly events: DecisionEvents,
    @Inject(KEYCARD_OPTIONS) options: KeycardOptions,
    validators: TokenValidators,
  ) {
    this.verification = new Verification({ contexts, verifier, routeRules, options, validators });
    this.admissions = new Admissions({ policy: new AuthorizationPolicy(), events });
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
    const call = this.contexts.callOf(context, this.events.active);
    if (typeof call === 'boolean') return call;
    if (this.events.active) call.started = performance.now();
    if (call.transportRefusal !== undefined) return this.refusals.refuse(call, judge, call.transportRefusal);
    try {
      const agent = this.verification.agentOf(call);
      if (!(agent instanceof Promise)) return this.admissions.admit(call, judge, agent);
      return agent
        .then((verified) => this.admissions.admit(call, judge, verified))
        .catch((error: unknown) => this.refusals.refuse(call, judge, error));
    } catch (error) {
      return this.refusals.refuse(call, judge, error);
    }
  }

  /**
   * {@link decide}, for a judge that may still refuse the call afterwards (the throttler's 429):
   * the admission's event is not final, and {@link conclude} publishes the call's final outcome.
   */
  decideProvisionally(context: ExecutionContext): boolean | Promise<boolean> {
    if (this.events.active) this.admissions.hold(context);
    return this.decide(context);
  }

  /**
   * Publishes the final outcome of a call decided by {@link decideProvisionally}: `status` 200
   * when served, else the later judge's refusal (429 `rate_limited`). A call admitted in an earlier
   * run (its admission was final) gets an event only for a refusal.
   */
  conclude(context: ExecutionContext, status: number, reason?: DenialReason): void {
    if (!this.events.active) return;
    const held = this.admissions.concluded(context);
    if ((held === undefined || held === null) && status < 400) return;
    const call = held ?? this.contexts.callOf(context, true);
    if (typeof call === 'boolean') return;
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
}
