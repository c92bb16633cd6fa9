import type { AgentContext } from '../../interfaces/agent-context.interface.js';
import type { ActorRequirement, ClaimPredicate, ClaimRequirement, ClaimValue } from './policy-metadata.js';

/** One claim predicate, compiled: true when the verified claims satisfy it. */
type Check = (claims: Readonly<Record<string, unknown>>) => boolean;

/**
 * `@RequireClaims()` compiled at bootstrap (catalogue T18). Claims are read as own properties
 * only, so a `__proto__` key in a token never satisfies anything; `includes` needs an array claim
 * (a string claim does not "include" its own value).
 * @throws Error at bootstrap for a predicate of no known shape (`where` names the handler).
 */
export function compileClaims(required: ClaimRequirement, where: string): Check {
  const checks = Object.entries(required).map(([name, predicate]) => checkOf(name, predicate, where));
  return (claims) => {
    for (let i = 0; i < checks.length; i++) if (!checks[i](claims)) return false;
    return true;
  };
}

function checkOf(name: string, predicate: ClaimPredicate, where: string): Check {
  const own = (claims: Readonly<Record<string, unknown>>): unknown => (Object.hasOwn(claims, name) ? claims[name] : undefined);
  if (isScalar((predicate as { includes?: unknown }).includes)) {
    const value = (predicate as { includes: ClaimValue }).includes;
    return (claims) => {
      const claim = own(claims);
      return Array.isArray(claim) && claim.includes(value);
    };
  }
  if (isScalar((predicate as { equals?: unknown }).equals)) {
    const value = (predicate as { equals: ClaimValue }).equals;
    return (claims) => own(claims) === value;
  }
  const oneOf = (predicate as { oneOf?: unknown }).oneOf;
  if (Array.isArray(oneOf) && oneOf.length > 0 && oneOf.every(isScalar)) {
    return (claims) => (oneOf as unknown[]).includes(own(claims));
  }
  throw new Error(`KeycardModule: @RequireClaims() on ${where}: claim '${name}' needs { includes }, { equals } or { oneOf: [...] } with string, number or boolean values`);
}

function isScalar(value: unknown): value is ClaimValue {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

/**
 * `@RequireActors()` compiled (catalogue T29, RFC 8693 §4.1): the chain's depth, and the outermost
 * actor (the current one) among the allowed ones.
 * @throws Error at bootstrap for a negative or fractional depth or an empty allow-list.
 */
export function compileActors(required: ActorRequirement, where: string): (agent: AgentContext) => boolean {
  const { maxDepth, allowed } = required;
  if (maxDepth !== undefined && (!Number.isInteger(maxDepth) || maxDepth < 0)) {
    throw new Error(`KeycardModule: @RequireActors() on ${where}: maxDepth must be a whole number ≥ 0`);
  }
  if (allowed !== undefined && (!Array.isArray(allowed) || allowed.length === 0 || !allowed.every((a) => typeof a === 'string'))) {
    throw new Error(`KeycardModule: @RequireActors() on ${where}: allowed must list at least one actor sub`);
  }
  return (agent) => {
    if (allowed !== undefined && (agent.actor?.subject === undefined || !allowed.includes(agent.actor.subject))) return false;
    if (maxDepth === undefined) return true;
    let depth = 0;
    for (let link = agent.actor; link !== undefined; link = link.actor) if (++depth > maxDepth) return false;
    return true;
  };
}
