import { SetMetadata } from '@nestjs/common';
import { actorsProblem, claimsProblem } from '../decision/policy/claim-check.js';
import {
  type ActorRequirement, type ClaimRequirement, KEYCARD_ACTORS, KEYCARD_CLAIMS,
} from '../decision/policy/policy-metadata.js';
import { checkedAt } from './checked-at-decoration.js';

/**
 * Requires claims of the verified token beyond scopes (catalogue T18, T19, Q27): roles, groups, a
 * tenant. Each claim is read as an own property; `includes` needs an array claim. A token that
 * fails gets 403 `insufficient_scope` without `scope` ("The access token lacks a required
 * permission"); when a scope is missing too, the one 403 names the scopes.
 * @example `@RequireClaims({ roles: { includes: 'admin' }, tenant: { equals: 'acme' } })`
 * @throws TypeError at decoration for no claim at all (`{}` would require nothing) or a predicate
 *   that is not exactly one of `{ includes }`, `{ equals }`, `{ oneOf: [...] }` with string, number
 *   or boolean values.
 * @publicApi
 */
export const RequireClaims = (claims: ClaimRequirement) => {
  checkedAt('@RequireClaims', claimsProblem(claims));
  return SetMetadata(KEYCARD_CLAIMS, Object.freeze({ ...claims }));
};

/**
 * Bounds the RFC 8693 delegation chain (`act`, §4.1) of the verified token (catalogue T29): at most
 * `maxDepth` links, and the outermost (current) actor's `sub` among `allowed`. Refused like a claim
 * (403 `insufficient_scope` without `scope`).
 * @example `@RequireActors({ maxDepth: 1, allowed: ['agent-b'] })`
 * @throws TypeError at decoration for neither `maxDepth` nor `allowed`, an unknown key, a negative or
 *   fractional depth or an empty allow-list.
 * @publicApi
 */
export const RequireActors = (actors: ActorRequirement) => {
  checkedAt('@RequireActors', actorsProblem(actors));
  const { maxDepth, allowed } = actors;
  return SetMetadata(KEYCARD_ACTORS, Object.freeze({ maxDepth, allowed: allowed && Object.freeze([...allowed]) }));
};
