import type { StepUp } from './authentication-check.js';
import type { ScopeSet } from './scope-set.js';

const NONE: readonly string[] = Object.freeze([]);

/**
 * What the requirements of one call found about a verified agent (ASP.NET Core's
 * `AuthorizationHandlerContext`): each {@link RequirementCheck} adds to it, and the policy reads
 * it once at the end. Every scope the call needs is gathered (the route's chosen path, the
 * argument-derived ones, an MCP tool's), so one refusal names all of it (catalogue T9, T19, T26).
 */
export class Verdict {
  /** Every scope the call requires, in order, without duplicates: what the challenge names. */
  needed: readonly string[] = NONE;
  /** True while the token satisfies every scope of {@link needed} (through the scope hierarchy). */
  held = true;
  /** The token scopes that satisfied {@link needed}: what an app's `hasScopes` hook is asked about. */
  grants: readonly string[] = NONE;
  /** A claim or delegation predicate failed (Q27). */
  permissionMissing = false;
  /** What the user's sign-in lacks (RFC 9470), when a requirement asks for more. */
  stepUp: StepUp | undefined = undefined;

  /** Ready for the next call: the policy keeps one verdict, as judging is synchronous. */
  reset(): this {
    this.needed = NONE;
    this.held = true;
    this.grants = NONE;
    this.permissionMissing = false;
    this.stepUp = undefined;
    return this;
  }

  /** Adds the all-of `set`, judged against the token's `granted` scopes. Allocates nothing for the first set. */
  require(set: ScopeSet, granted: readonly string[]): void {
    const held = set.heldBy(granted);
    this.needed = this.needed.length === 0 ? set.scopes : union(this.needed, set.scopes);
    this.held &&= held;
    if (this.held) this.grants = this.grants.length === 0 ? set.grantsIn(granted) : union(this.grants, set.grantsIn(granted));
  }

  /** Adds what a sign-in lacks; two in one challenge keep the first `acr_values` and the shorter `max_age`. */
  requireStepUp(stepUp: StepUp | undefined): void {
    if (stepUp === undefined) return;
    const earlier = this.stepUp;
    if (earlier === undefined) {
      this.stepUp = stepUp;
      return;
    }
    const ages = [earlier.maxAge, stepUp.maxAge].filter((age) => age !== undefined);
    this.stepUp = { acrValues: earlier.acrValues ?? stepUp.acrValues, maxAge: ages.length > 0 ? Math.min(...ages) : undefined };
  }

  /** True when nothing is missing. */
  get met(): boolean {
    return this.held && !this.permissionMissing && this.stepUp === undefined;
  }
}

/** `base` followed by the scopes of `extra` it lacks: `base` itself when it has them all. */
function union(base: readonly string[], extra: readonly string[]): readonly string[] {
  let merged: string[] | undefined;
  for (let i = 0; i < extra.length; i++) {
    if (base.includes(extra[i]) || merged?.includes(extra[i])) continue;
    (merged ??= [...base]).push(extra[i]);
  }
  return merged ?? base;
}
