import type { AgentContext } from '../../interfaces/agent-context.interface.js';
import type { KeycardLogger } from '../../keycard-options.js';
import type { Clock } from '../../clock.js';
import type { Call } from '../call.js';
import { AuthenticationCheck } from './authentication-check.js';
import { compileActors, compileClaims } from './claim-check.js';
import type { ActorRequirement, ArgumentScopes, AuthenticationRequirement, ClaimRequirement } from './policy-metadata.js';
import {
  ArgumentScopesCheck, PredicateCheck, type RequirementCheck, ScopePathsCheck, StepUpCheck,
} from './requirement-checks.js';
import { OFFLINE_ACCESS, type ScopeHierarchy } from './scope-hierarchy.js';
import { ScopeSet } from './scope-set.js';
import type { Verdict } from './verdict.js';

/** What a handler declared, each part the nearest declaration of its decorator. */
export interface Declared {
  /** `@RequireScopes(...)`: all of them. */
  readonly scopes?: readonly string[];
  /** `@RequireScopes.anyOf(...)`: one of these paths, each all-of, on top of {@link scopes}. */
  readonly anyOf?: readonly (readonly string[])[];
  /** `@RequireScopes.fromArguments(fn)`. */
  readonly fromArguments?: ArgumentScopes;
  readonly claims?: ClaimRequirement;
  readonly authentication?: AuthenticationRequirement;
  readonly actors?: ActorRequirement;
}

/** What requirements are compiled with: the module's hierarchy, clock and leeway, and its logger. */
export interface PolicyParts {
  readonly hierarchy: ScopeHierarchy;
  readonly clock: Clock;
  readonly leewaySeconds: number;
  readonly logger: KeycardLogger;
}

const NONE: readonly string[] = Object.freeze([]);

/**
 * One handler's requirement, compiled at bootstrap (STYLE 25): the parts it declared, each a
 * {@link RequirementCheck} — the step-up, the scope paths through the scope hierarchy, the
 * argument-dependent scopes, the claim and delegation predicates — judged in that order. It is a
 * check itself, so a call with two requirements (an MCP endpoint's and its tool's) gathers both in
 * one {@link Verdict}. For plain scopes judging walks precomputed arrays and allocates nothing.
 */
export class Requirement implements RequirementCheck {
  /** The scope paths, each all-of, in declaration order (one unless `anyOf`). */
  readonly alternatives: readonly ScopeSet[];
  private readonly checks: readonly RequirementCheck[];

  private constructor(declared: Declared, name: string, parts: PolicyParts) {
    const base = declared.scopes ?? NONE;
    const paths = declared.anyOf ?? [NONE];
    this.alternatives = paths.map((path) => new ScopeSet([...base, ...path], parts.hierarchy));
    const checks: RequirementCheck[] = [];
    if (declared.authentication !== undefined) checks.push(new StepUpCheck(new AuthenticationCheck(declared.authentication, parts, name)));
    checks.push(new ScopePathsCheck(this.alternatives));
    if (declared.fromArguments !== undefined) checks.push(new ArgumentScopesCheck(declared.fromArguments, { name, ...parts }));
    if (declared.claims !== undefined) {
      const claims = compileClaims(declared.claims, name);
      checks.push(new PredicateCheck((agent) => claims(agent.claims)));
    }
    if (declared.actors !== undefined) checks.push(new PredicateCheck(compileActors(declared.actors, name)));
    this.checks = checks;
  }

  /**
   * Compiles `declared` for the handler `name`; `undefined` when it requires nothing.
   * @throws Error naming the handler for `offline_access` anywhere (Q29) or a malformed predicate.
   */
  static compile(declared: Declared, name: string, parts: PolicyParts): Requirement | undefined {
    const { scopes, anyOf, fromArguments, claims, authentication, actors } = declared;
    if ((scopes?.length ?? 0) === 0 && anyOf === undefined && !fromArguments && !claims && !authentication && !actors) return undefined;
    for (const scope of [...(scopes ?? []), ...(anyOf ?? []).flat()]) {
      if (scope === OFFLINE_ACCESS) {
        throw new Error(`KeycardModule: ${name} requires offline_access, which is no permission on this API (it only asks for a refresh token); remove it`);
      }
    }
    return new Requirement(declared, name, parts);
  }

  /** The scopes of the first declared path: the `scope` hint of a 401 (Q12, Q25). */
  get scopeParam(): string | undefined {
    return this.alternatives[0].param || undefined;
  }

  /** Every scope named statically (all paths), for `scopes_supported` (T28: argument-derived ones never). */
  get declaredScopes(): readonly string[] {
    return this.alternatives.flatMap((set) => set.scopes);
  }

  /**
   * Adds to `verdict` what the verified `agent` lacks for this requirement.
   * @throws InvalidTokenException for a malformed `acr` / `auth_time` (T20, T21); PolicyFailedException
   *   when the argument function throws or returns anything but valid scopes (T13).
   */
  assess(agent: AgentContext, call: Call, verdict: Verdict): void {
    for (let i = 0; i < this.checks.length; i++) this.checks[i].assess(agent, call, verdict);
  }
}
