/**
 * A scope a broader scope implies: another scope by name, or every scope that starts with a prefix
 * ending in its delimiter (`{ prefix: 'orders:' }` covers `orders:read`, not `ordersx:read`).
 * @publicApi
 */
export type ImpliedScope = string | { readonly prefix: string };

/**
 * The option `scopeHierarchy`: each key is a broader scope, its list the scopes it implies (catalogue
 * Q24). Explicit only: nothing is implied by default, and scope strings in a token never expand.
 * @example `{ 'orders:write': ['orders:read'], 'orders:admin': ['orders:write', { prefix: 'orders:' }] }`
 * @publicApi
 */
export type ScopeHierarchyOption = Readonly<Record<string, readonly ImpliedScope[]>>;

/** RFC 6749 §3.3 scope-token: printable ASCII without space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** True for an RFC 6749 §3.3 scope-token. */
export function isScopeToken(value: unknown): value is string {
  return typeof value === 'string' && SCOPE_TOKEN.test(value);
}
/** A prefix ends in one of these, so it matches whole segments only (Q24). */
const DELIMITERS = [':', '/', '.'];
/** The one scope no requirement, challenge or metadata document may name (Q29). */
export const OFFLINE_ACCESS = 'offline_access';
/** Arguments may name any scope: remembered up to this many, computed afresh beyond. */
const CACHE_LIMIT = 1024;

function refuse(entry: string, rule: string): never {
  throw new Error(`KeycardModule: 'scopeHierarchy' entry ${entry} ${rule}`);
}

/** What one broader scope implies, after the transitive closure. */
interface Closure {
  readonly scopes: Set<string>;
  readonly prefixes: Set<string>;
}

/**
 * The compiled `scopeHierarchy`: for any required scope, the token scopes that satisfy it (itself
 * first, then every broader scope whose closure names it or covers it by prefix). The closure is
 * computed once at bootstrap (catalogue T2); matching a static requirement is then a lookup of
 * precomputed lists.
 */
export class ScopeHierarchy {
  /** No hierarchy: a scope is satisfied only by itself (the default; RFC 6749 §3.3). */
  static readonly NONE = new ScopeHierarchy(new Map());

  private readonly cache = new Map<string, readonly string[]>();

  private constructor(private readonly closures: ReadonlyMap<string, Closure>) {}

  /**
   * Compiles and checks the option.
   * @throws Error naming the entry and the rule it breaks: a key or implied scope that is no
   *   scope-token, contains `*` or is `offline_access`; a prefix that is empty or does not end in
   *   `:`, `/` or `.`; a cycle (T4).
   */
  static compile(option: ScopeHierarchyOption | undefined): ScopeHierarchy {
    if (option === undefined) return ScopeHierarchy.NONE;
    if (typeof option !== 'object' || option === null || Array.isArray(option)) {
      throw new Error("KeycardModule: 'scopeHierarchy' must be an object mapping a scope to the scopes it implies");
    }
    const declared = new Map<string, readonly ImpliedScope[]>();
    for (const [key, implied] of Object.entries(option)) {
      checkScope(key, `'${key}'`);
      if (!Array.isArray(implied)) refuse(`'${key}'`, 'must map to an array of scopes or { prefix } entries');
      for (const entry of implied as readonly unknown[]) checkImplied(key, entry);
      declared.set(key, implied as readonly ImpliedScope[]);
    }
    const closures = new Map<string, Closure>();
    for (const key of declared.keys()) closures.set(key, closureOf(key, declared));
    return new ScopeHierarchy(closures);
  }

  /** True when no scope implies another. */
  get isEmpty(): boolean {
    return this.closures.size === 0;
  }

  /** The token scopes that satisfy `scope`: itself, then each broader scope (declaration order). */
  satisfiersOf(scope: string): readonly string[] {
    const known = this.cache.get(scope);
    if (known !== undefined) return known;
    const found = [scope];
    for (const [broader, closure] of this.closures) {
      if (broader !== scope && implies(closure, scope)) found.push(broader);
    }
    const frozen = Object.freeze(found);
    if (this.cache.size < CACHE_LIMIT) this.cache.set(scope, frozen);
    return frozen;
  }
}

function implies(closure: Closure, scope: string): boolean {
  if (closure.scopes.has(scope)) return true;
  for (const prefix of closure.prefixes) if (scope.startsWith(prefix)) return true;
  return false;
}

function checkScope(scope: unknown, entry: string): void {
  if (!isScopeToken(scope)) refuse(entry, 'is not a valid scope (RFC 6749 §3.3)');
  if (scope.includes('*')) refuse(entry, 'is a wildcard: name each scope, or use { prefix: "…:" } (no wildcard or omnibus scopes)');
  if (scope === OFFLINE_ACCESS) refuse(entry, 'names offline_access, which is no permission on this API');
}

function checkImplied(key: string, entry: unknown): void {
  if (typeof entry === 'string') return checkScope(entry, `'${key}' → '${entry}'`);
  const prefix = (entry as { prefix?: unknown } | null)?.prefix;
  if (typeof prefix !== 'string') refuse(`'${key}'`, 'implies something that is neither a scope nor { prefix }');
  const where = `'${key}' → { prefix: ${JSON.stringify(prefix)} }`;
  if (prefix.length === 0) refuse(where, 'has an empty prefix, which would imply every scope');
  if (!DELIMITERS.includes(prefix.at(-1)!)) refuse(where, `must end with a delimiter (${DELIMITERS.join(' ')}), so 'orders' cannot cover 'ordersx:read'`);
  if (prefix.length === 1) refuse(where, 'is only a delimiter, which would imply nearly every scope');
  checkScope(prefix, where);
}

/** The transitive closure of `key` (depth first, so a cycle is found on its own path). */
function closureOf(key: string, declared: ReadonlyMap<string, readonly ImpliedScope[]>): Closure {
  const closure: Closure = { scopes: new Set(), prefixes: new Set() };
  const visit = (scope: string, path: readonly string[]): void => {
    for (const entry of declared.get(scope) ?? []) {
      if (typeof entry === 'string') {
        if (path.includes(entry)) refuse(`'${[...path, entry].join("' → '")}'`, 'is a cycle');
        closure.scopes.add(entry);
        visit(entry, [...path, entry]);
        continue;
      }
      closure.prefixes.add(entry.prefix);
      // Broader scopes the prefix covers bring what they imply too.
      for (const other of declared.keys()) {
        if (other.startsWith(entry.prefix) && !path.includes(other)) visit(other, [...path, other]);
      }
    }
  };
  visit(key, [key]);
  return closure;
}
