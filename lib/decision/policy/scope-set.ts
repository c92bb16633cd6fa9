import type { ScopeHierarchy } from './scope-hierarchy.js';

/**
 * An all-of list of scopes compiled against the scope hierarchy: for each scope, the token scopes
 * that satisfy it. Judging a token against it walks precomputed arrays and allocates nothing.
 */
export class ScopeSet {
  /** The scopes, in declaration order, without duplicates: what a challenge names. */
  readonly scopes: readonly string[];
  /** The same, space-joined (the `scope` parameter). */
  readonly param: string;
  private readonly satisfiers: readonly (readonly string[])[];

  constructor(scopes: readonly string[], hierarchy: ScopeHierarchy) {
    this.scopes = Object.freeze([...new Set(scopes)]);
    this.param = this.scopes.join(' ');
    this.satisfiers = this.scopes.map((scope) => hierarchy.satisfiersOf(scope));
  }

  /** True when `granted` (a token's scopes) satisfies every scope. */
  heldBy(granted: readonly string[]): boolean {
    for (let i = 0; i < this.satisfiers.length; i++) if (!anyIn(this.satisfiers[i], granted)) return false;
    return true;
  }

  /** How many of the scopes `granted` satisfies (Q25: the path sharing the most scopes is named). */
  overlap(granted: readonly string[]): number {
    let count = 0;
    for (let i = 0; i < this.satisfiers.length; i++) if (anyIn(this.satisfiers[i], granted)) count++;
    return count;
  }

  /**
   * The token scopes that satisfy this set, for an app's own `hasScopes` hook: the set itself when
   * every scope is held by name (no allocation), else the broader scopes that satisfy it.
   * Call only when {@link heldBy} is true.
   */
  grantsIn(granted: readonly string[]): readonly string[] {
    let literal = true;
    for (let i = 0; i < this.scopes.length && literal; i++) literal = granted.includes(this.scopes[i]);
    if (literal) return this.scopes;
    return this.satisfiers.map((options) => options.find((scope) => granted.includes(scope))!);
  }
}

function anyIn(options: readonly string[], granted: readonly string[]): boolean {
  for (let i = 0; i < options.length; i++) if (granted.includes(options[i])) return true;
  return false;
}
