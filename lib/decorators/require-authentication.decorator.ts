import { SetMetadata } from '@nestjs/common';
import { authenticationProblem } from '../decision/policy/authentication-check.js';
import { type AuthenticationRequirement, KEYCARD_AUTHENTICATION } from '../decision/policy/policy-metadata.js';
import { checkedAt } from './checked-at-decoration.js';

/**
 * Step-up authentication (RFC 9470; catalogue T20–T25, Q28): the user's sign-in must be one of
 * `acr` (exact match) and/or no older than `maxAge` seconds (`auth_time`, with the clock leeway).
 * Otherwise 401 `error="insufficient_user_authentication"` with `acr_values` / `max_age` (only the
 * unmet parts) and the call's `scope`, so the client signs the user in again with them (RFC 9470 §4).
 * Judged only after the token is fully verified; a malformed `acr` or `auth_time` is 401 `invalid_token`.
 * @example `@RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'], maxAge: 300 })`
 * @throws TypeError at decoration for neither `acr` nor `maxAge` (`{}` would require nothing), an
 *   unknown key, an empty `acr` list or a `maxAge` that is no whole number ≥ 0.
 * @publicApi
 */
export const RequireAuthentication = (required: AuthenticationRequirement) => {
  checkedAt('@RequireAuthentication', authenticationProblem(required));
  const { acr, maxAge } = required;
  return SetMetadata(KEYCARD_AUTHENTICATION, Object.freeze({ acr: acr && Object.freeze([...acr]), maxAge }));
};
