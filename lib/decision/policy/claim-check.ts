import type { AgentContext } from '../../interfaces/agent-context.interface.js';
import { unknownOptionMessage } from '../../option-names.js';
import { MAX_ACTOR_DEPTH } from '../../resource-server/access-token-rules.js';
import type { ActorRequirement, ClaimPredicate, ClaimRequirement, ClaimValue } from './policy-metadata.js';

/** One claim predicate, compiled: true when the verified claims satisfy it. */
type Check = (claims: Readonly<Record<string, unknown>>) => boolean;

const PREDICATES = ['includes', 'equals', 'oneOf'];

/**
 * What is wrong with a `@RequireClaims()` argument, or `undefined` when every claim has one
 * well-formed predicate. Checked at decoration and again at bootstrap: `{}` (or a literal
 * `__proto__:` key, which sets the prototype) would require nothing, and a predicate with a second
 * or misspelt key would silently require less than it reads.
 */
export function claimsProblem(required: unknown): string | undefined {
  if (typeof required !== 'object' || required === null || Array.isArray(required)) return 'give an object of claim predicates';
  const names = Object.keys(required);
  if (names.length === 0) return 'give at least one claim (an empty requirement would require nothing)';
  for (const name of names) {
    if (!isPredicate((required as Record<string, unknown>)[name])) {
      return `claim '${name}' needs { includes }, { equals } or { oneOf: [...] } (exactly one) with string, number or boolean values`;
    }
  }
  return undefined;
}

function isPredicate(predicate: unknown): boolean {
  if (typeof predicate !== 'object' || predicate === null) return false;
  const keys = Object.keys(predicate);
  if (keys.length !== 1 || !PREDICATES.includes(keys[0])) return false;
  const value = (predicate as Record<string, unknown>)[keys[0]];
  if (keys[0] !== 'oneOf') return isScalar(value);
  return Array.isArray(value) && value.length > 0 && value.every(isScalar);
}

/**
 * `@RequireClaims()` compiled at bootstrap (catalogue T18). Claims are read as own properties
 * only, so a `__proto__` key in a token never satisfies anything; `includes` needs an array claim
 * (a string claim does not "include" its own value).
 * @throws Error at bootstrap for a requirement {@link claimsProblem} finds wrong (`where` names the handler).
 */
export function compileClaims(required: ClaimRequirement, where: string): Check {
  const problem = claimsProblem(required);
  if (problem !== undefined) throw new Error(`KeycardModule: @RequireClaims() on ${where}: ${problem}`);
  const checks = Object.entries(required).map(([name, predicate]) => checkOf(name, predicate));
  return (claims) => {
    for (let i = 0; i < checks.length; i++) if (!checks[i](claims)) return false;
    return true;
  };
}

/** One predicate, already checked by {@link claimsProblem}. */
function checkOf(name: string, predicate: ClaimPredicate): Check {
  const own = (claims: Readonly<Record<string, unknown>>): unknown => (Object.hasOwn(claims, name) ? claims[name] : undefined);
  if ('includes' in predicate) {
    const value = predicate.includes;
    return (claims) => {
      const claim = own(claims);
      return Array.isArray(claim) && claim.includes(value);
    };
  }
  if ('equals' in predicate) {
    const value = predicate.equals;
    return (claims) => own(claims) === value;
  }
  const { oneOf } = predicate;
  return (claims) => oneOf.includes(own(claims) as ClaimValue);
}

function isScalar(value: unknown): value is ClaimValue {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

const ACTOR_KEYS = ['maxDepth', 'allowed'];

/**
 * What is wrong with a `@RequireActors()` argument, or `undefined` when it bounds the chain.
 * Checked at decoration and again at bootstrap: `{}` or a misspelt key would bound nothing.
 */
export function actorsProblem(required: unknown): string | undefined {
  if (typeof required !== 'object' || required === null || Array.isArray(required)) return 'give an object { maxDepth?, allowed? }';
  for (const key of Object.keys(required)) if (!ACTOR_KEYS.includes(key)) return `'${key}' ${unknownOptionMessage(key, ACTOR_KEYS)}`;
  const { maxDepth, allowed } = required as ActorRequirement;
  if (maxDepth !== undefined && (!Number.isInteger(maxDepth) || maxDepth < 0)) return 'maxDepth must be a whole number ≥ 0';
  if (maxDepth !== undefined && maxDepth > MAX_ACTOR_DEPTH) {
    return `maxDepth ${maxDepth} can never apply: a token whose act chain has more than ${MAX_ACTOR_DEPTH} links is refused as invalid before any policy`;
  }
  if (allowed !== undefined && (!Array.isArray(allowed) || allowed.length === 0 || !allowed.every((a) => typeof a === 'string' && a.length > 0))) {
    return 'allowed must list at least one actor sub';
  }
  if (maxDepth === undefined && allowed === undefined) return 'give maxDepth, allowed or both (an empty requirement would require nothing)';
  return undefined;
}

/**
 * `@RequireActors()` compiled (catalogue T29, RFC 8693 §4.1): the chain's depth, and the outermost
 * actor (the current one) among the allowed ones. Walks `AgentContext.actor`, which is the token's
 * `act` chain link for link: verification refuses a malformed link or a chain deeper than its bound
 * with 401 `invalid_token` on every route, so there is no shorter chain here to be fooled by.
 * @throws Error at bootstrap for a requirement {@link actorsProblem} finds wrong (`where` names the handler).
 */
export function compileActors(required: ActorRequirement, where: string): (agent: AgentContext) => boolean {
  const problem = actorsProblem(required);
  if (problem !== undefined) throw new Error(`KeycardModule: @RequireActors() on ${where}: ${problem}`);
  const { maxDepth, allowed } = required;
  return ({ actor }) => {
    if (maxDepth !== undefined) {
      let depth = 0;
      for (let link = actor; link !== undefined; link = link.actor) if (++depth > maxDepth) return false;
    }
    const outermost = actor?.subject;
    return allowed === undefined || (outermost !== undefined && allowed.includes(outermost));
  };
}
