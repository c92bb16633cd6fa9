import type { AgentContext } from '../../interfaces/agent-context.interface.js';
import type { KeycardLogger } from '../../keycard-options.js';
import { logSafe } from '../../logging/log-safe.js';
import { PolicyFailedException } from '../../resource-server/keycard.exceptions.js';
import type { Call } from '../call.js';
import type { AuthenticationCheck } from './authentication-check.js';
import { argumentsOf } from './call-arguments.js';
import type { ArgumentScopes } from './policy-metadata.js';
import { isScopeToken, OFFLINE_ACCESS, type ScopeHierarchy } from './scope-hierarchy.js';
import { ScopeSet } from './scope-set.js';
import type { Verdict } from './verdict.js';

/**
 * One part of a handler's requirement with its handler (ASP.NET Core's `IAuthorizationRequirement`
 * and `AuthorizationHandler`): judges a verified agent (INV5) and adds what it finds to the call's
 * {@link Verdict}. Compiled at bootstrap; judging is synchronous.
 */
export interface RequirementCheck {
  /**
   * Adds to `verdict` what `agent` lacks for this part of the requirement of `call`.
   * @throws KeycardException when the token itself is unfit (a malformed `acr`), or the policy fails (500).
   */
  assess(agent: AgentContext, call: Call, verdict: Verdict): void;
}

/**
 * `@RequireScopes()` and `@RequireScopes.anyOf()`: the first path the token satisfies; else the one
 * sharing the most scopes with it, ties to the first declared, names what is missing (Q25).
 */
export class ScopePathsCheck implements RequirementCheck {
  constructor(readonly alternatives: readonly ScopeSet[]) {}

  assess(agent: AgentContext, _call: Call, verdict: Verdict): void {
    verdict.require(this.choose(agent.scopes), agent.scopes);
  }

  private choose(granted: readonly string[]): ScopeSet {
    const { alternatives } = this;
    if (alternatives.length === 1) return alternatives[0];
    for (let i = 0; i < alternatives.length; i++) if (alternatives[i].heldBy(granted)) return alternatives[i];
    let best = alternatives[0];
    let bestOverlap = best.overlap(granted);
    for (let i = 1; i < alternatives.length; i++) {
      const overlap = alternatives[i].overlap(granted);
      if (overlap > bestOverlap) [best, bestOverlap] = [alternatives[i], overlap];
    }
    return best;
  }
}

/** How an argument-dependent requirement reports a policy bug: its handler's name, the module's hierarchy and logger. */
export interface ArgumentScopesParts {
  readonly name: string;
  readonly hierarchy: ScopeHierarchy;
  readonly logger: KeycardLogger;
}

/**
 * `@RequireScopes.fromArguments(fn)`: the scopes the call's arguments need, on top of the declared
 * ones. A policy bug (the function throws, or returns anything but valid scope tokens) fails
 * closed (T13), logged naming the handler.
 */
export class ArgumentScopesCheck implements RequirementCheck {
  constructor(
    private readonly scopesOf: ArgumentScopes,
    private readonly parts: ArgumentScopesParts,
  ) {}

  assess(agent: AgentContext, call: Call, verdict: Verdict): void {
    const extra = this.argumentScopes(agent, call);
    if (extra.length > 0) verdict.require(new ScopeSet(extra, this.parts.hierarchy), agent.scopes);
  }

  private argumentScopes(agent: AgentContext, call: Call): readonly string[] {
    let scopes: unknown;
    try {
      scopes = this.scopesOf(argumentsOf(call), agent);
    } catch (error) {
      return this.failed(`threw ${logSafe((error as Error)?.name ?? typeof error)}`);
    }
    if (!Array.isArray(scopes)) return this.failed('returned no array');
    for (const scope of scopes as unknown[]) {
      if (!isScopeToken(scope)) return this.failed('returned an invalid scope');
      if (scope === OFFLINE_ACCESS) return this.failed('returned offline_access');
    }
    return scopes as readonly string[];
  }

  private failed(why: string): never {
    this.parts.logger.error(`KeycardModule: the argument-dependent scopes of ${logSafe(this.parts.name)} ${why}; the call is refused (500)`);
    throw new PolicyFailedException();
  }
}

/** `@RequireClaims()` and the delegation chain (`actors`): a compiled predicate on the verified agent (Q27). */
export class PredicateCheck implements RequirementCheck {
  constructor(private readonly holds: (agent: AgentContext) => boolean) {}

  assess(agent: AgentContext, _call: Call, verdict: Verdict): void {
    if (!this.holds(agent)) verdict.permissionMissing = true;
  }
}

/** `@RequireAuthentication()` (RFC 9470): what the user's sign-in lacks, asked for by a step-up challenge. */
export class StepUpCheck implements RequirementCheck {
  constructor(private readonly authentication: AuthenticationCheck) {}

  assess(agent: AgentContext, _call: Call, verdict: Verdict): void {
    verdict.requireStepUp(this.authentication.stepUpFor(agent));
  }
}
