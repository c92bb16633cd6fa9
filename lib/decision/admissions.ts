import type { ExecutionContext } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { endRuns } from '../contexts/connection-refusal-runs.js';
import type { Call } from './call.js';
import type { Outcome } from './decision-event.js';
import type { DecisionEvents } from './decision-events.js';
import { rememberAdmission } from './earlier-admission.js';
import type { Judge } from './judge.js';
import type { AuthorizationPolicy } from './authorization-policy.js';
import { ANONYMOUS } from './verification.js';

/**
 * On a call's `ExecutionContext` (one object for every guard of the call): the call whose final
 * outcome a later judge publishes (the throttler's 429 may still come), `null` until it is admitted.
 */
const HELD = Symbol('keycard.held-admission');

type Holder = Record<typeof HELD, Call | null | undefined>;

/** What admitting needs from the module. */
export interface AdmissionParts {
  readonly policy: AuthorizationPolicy;
  readonly events: DecisionEvents;
}

/**
 * The second half of a decision (STYLE 25): the verified agent judged by the policy (only now:
 * INV5), then handed to the handler on the call's carrier, with the admission published once.
 * A call admitted by an earlier judge of the same call is judged again and nothing more.
 */
export class Admissions {
  constructor(private readonly parts: AdmissionParts) {}

  /**
   * Admits `call` for `agent` ({@link ANONYMOUS}: a `@Public()` route, or a tool its endpoint serves
   * without a token). On an endpoint route (`rules.endpoint`, MCP), the transport gets what it reads.
   * @returns `true`.
   * @throws the policy's refusal (InsufficientScopeException, InsufficientUserAuthenticationException,
   *   InsufficientPermissionException) when it is not met.
   */
  admit(call: Call, judge: Judge, agent: AgentContext | typeof ANONYMOUS): true {
    const verified = agent !== ANONYMOUS;
    if (verified) {
      // The refusal's event and log line name the agent: `call.agent` holds it.
      const refusal = this.parts.policy.unmet(call, agent, judge);
      if (refusal !== undefined) throw refusal;
      if (call.admittedBefore) return true;
    }
    const outcome = this.parts.events.active ? this.outcomeOf(call, verified) : undefined;
    if (!call.rules.isPublic) call.rules.endpoint?.admittedCall(call);
    // Decided: nothing after this (observers, a later judge of the call, the handler) needs the token (INV7).
    call.token = undefined;
    // Published before the agent is handed over, so nothing a subscriber writes on the carrier survives.
    if (outcome !== undefined) this.parts.events.decided(call, outcome);
    if (call.isConnection) endRuns(call.carrier); // a served message ends the connection's refusal runs (their summary lines; O5)
    if (!verified) return true;
    call.carrier.user = agent;
    if (call.kind.sharedCarrier) rememberAdmission(call.context.getArgs(), call);
    return true;
  }

  /** The next admission in `context` is not final: a later judge may still refuse it ({@link concluded}). */
  hold(context: ExecutionContext): void {
    (context as unknown as Holder)[HELD] = null;
  }

  /**
   * The call held in `context` by {@link hold}: the admitted call, `null` when none was admitted,
   * `undefined` when nothing was held. Forgets it.
   */
  concluded(context: ExecutionContext): Call | null | undefined {
    const holder = context as unknown as Holder;
    const held = holder[HELD];
    holder[HELD] = undefined;
    return held;
  }

  /** The admission's outcome; not final when a later judge of the call publishes it ({@link hold}). */
  private outcomeOf(call: Call, verified: boolean): Outcome {
    const holder = call.context as unknown as Holder;
    const held = holder[HELD] !== undefined;
    if (held && verified) holder[HELD] = call; // the later judge publishes the final outcome
    if (verified) return { status: 200, agent: call.agent, final: !held };
    // Served without the token's agent (an `@OptionalAuth()` call in a zone outage): the event says why (T15).
    return call.anonymousReason === undefined ? { status: 200, public: true, final: !held } : { status: 200, public: true, detail: call.anonymousReason, final: !held };
  }
}
