import type { AgentContext } from '../../interfaces/agent-context.interface.js';
import type { KeycardLogger } from '../../keycard-options.js';
import type { Clock } from '../../clock.js';
import { logSafe } from '../../logging/log-safe.js';
import { PolicyFailedException } from '../../resource-server/keycard.exceptions.js';
import type { Call } from '../call.js';
import type { Judge } from '../judge.js';
import { AuthenticationCheck, type StepUp } from './authentication-check.js';
import { argumentsOf } from './call-arguments.js';
import { compileActors, compileClaims } from './claim-check.js';
import type { ActorRequirement, ArgumentScopes, AuthenticationRequirement, ClaimRequirement } from './policy-metadata.js';
import { isScopeToken, OFFLINE_ACCESS, type ScopeHierarchy } from './scope-hierarchy.js';
import { ScopeSet } from './scope-set.js';

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

/** What a verified agent lacks, for the one refusal that names all of it. */
export interface Shortfall {
  /** Every scope of the chosen path (and the argument-derived ones): what the challenge names. */
  readonly scopes: readonly string[];
  readonly scopeMissing: boolean;
  /** A claim or delegation predicate failed (Q27). */
  readonly permissionMissing: boolean;
  readonly stepUp: StepUp | undefined;
}

const NONE: readonly string[] = Object.freeze([]);

/**
 * One handler's requirement, compiled at bootstrap (STYLE 25): its scope paths against the scope
 * hierarchy, its claim, delegation and authentication predicates, its argument function.
 * {@link assess} judges a verified agent; for plain scopes it walks precomputed arrays and
 * allocates nothing.
 */
export class Requirement {
  /** The alternatives, each all-of, in declaration order (one unless `anyOf`). */
  readonly alternatives: readonly ScopeSet[];
  private readonly claims?: (claims: Readonly<Record<string, unknown>>) => boolean;
  private readonly actors?: (agent: AgentContext) => boolean;
  private readonly authentication?: AuthenticationCheck;
  private readonly fromArguments?: ArgumentScopes;

  private constructor(
    declared: Declared,
    private readonly name: string,
    private readonly parts: PolicyParts,
  ) {
    const base = declared.scopes ?? NONE;
    const paths = declared.anyOf ?? [NONE];
    this.alternatives = paths.map((path) => new ScopeSet([...base, ...path], parts.hierarchy));
    if (declared.claims !== undefined) this.claims = compileClaims(declared.claims, name);
    if (declared.actors !== undefined) this.actors = compileActors(declared.actors, name);
    if (declared.authentication !== undefined) this.authentication = new AuthenticationCheck(declared.authentication, parts, name);
    this.fromArguments = declared.fromArguments;
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
   * Judges a verified agent: `undefined` when admitted (and `call.required` is what was required),
   * else what it lacks.
   * @throws InvalidTokenException for a malformed `acr` / `auth_time` (T20, T21); PolicyFailedException
   *   when the argument function throws or returns anything but valid scopes (T13).
   */
  assess(agent: AgentContext, call: Call, judge: Judge): Shortfall | undefined {
    const stepUp = this.authentication?.stepUpFor(agent);
    const granted = agent.scopes;
    const chosen = this.choose(granted);
    let needed = chosen.scopes;
    let held = chosen.heldBy(granted);
    let grants = held ? chosen.grantsIn(granted) : NONE;
    if (this.fromArguments !== undefined) {
      const extra = this.argumentScopes(agent, call);
      if (extra.length > 0) {
        needed = withExtra(needed, extra);
        held &&= this.holdsEach(extra, granted);
        // The app's hasScopes hook is asked about token scopes: the needed ones when held by name.
        if (held) grants = everyIn(needed, granted) ? needed : new ScopeSet(needed, this.parts.hierarchy).grantsIn(granted);
      }
    }
    if (held && needed.length > 0) held = judge.hasScopes(agent, grants);
    const permissionMissing = (this.claims !== undefined && !this.claims(agent.claims)) || (this.actors !== undefined && !this.actors(agent));
    call.required = needed.length > 0 ? needed : undefined;
    if (held && !permissionMissing && stepUp === undefined) return undefined;
    return { scopes: needed, scopeMissing: !held, permissionMissing, stepUp };
  }

  /**
   * The scopes this requirement names for `granted` when another requirement of the same call
   * refuses (an MCP endpoint's, beside its tool's: T26): the chosen path's static scopes.
   */
  named(granted: readonly string[]): readonly string[] {
    return this.choose(granted).scopes;
  }

  /** The first path the token satisfies; else the one sharing the most scopes with it, ties to the first declared (Q25). */
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

  /** True when `granted` satisfies every scope of `scopes` (through the hierarchy's cached satisfiers). */
  private holdsEach(scopes: readonly string[], granted: readonly string[]): boolean {
    const { hierarchy } = this.parts;
    for (let i = 0; i < scopes.length; i++) {
      const options = hierarchy.satisfiersOf(scopes[i]);
      let found = false;
      for (let j = 0; j < options.length && !found; j++) found = granted.includes(options[j]);
      if (!found) return false;
    }
    return true;
  }

  /** The argument function's scopes, checked: a policy bug fails closed (T13), logged once naming the handler. */
  private argumentScopes(agent: AgentContext, call: Call): readonly string[] {
    let scopes: unknown;
    try {
      scopes = this.fromArguments!(argumentsOf(call), agent);
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
    this.parts.logger.error(`KeycardModule: the argument-dependent scopes of ${logSafe(this.name)} ${why}; the call is refused (500)`);
    throw new PolicyFailedException();
  }
}

/** `base` followed by the scopes of `extra` it lacks: `base` itself when it has them all. */
function withExtra(base: readonly string[], extra: readonly string[]): readonly string[] {
  let merged: string[] | undefined;
  for (let i = 0; i < extra.length; i++) {
    if (base.includes(extra[i]) || merged?.includes(extra[i])) continue;
    (merged ??= [...base]).push(extra[i]);
  }
  return merged ?? base;
}

function everyIn(scopes: readonly string[], granted: readonly string[]): boolean {
  for (let i = 0; i < scopes.length; i++) if (!granted.includes(scopes[i])) return false;
  return true;
}
