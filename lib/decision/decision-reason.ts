import type { DenialReason, KeycardException } from '../resource-server/keycard.exceptions.js';

/**
 * Why a call was refused, in the fixed vocabulary every door and every observer shares (catalogue
 * O23, W2): coarser than the {@link DenialReason} a refusal carries (`signature_invalid`,
 * `audience_mismatch`, …), which observers get as `detail`.
 * @publicApi
 */
export type DecisionReason =
  | 'no_credentials'
  | 'invalid_request'
  | 'invalid_token'
  | 'token_expired'
  | 'insufficient_scope'
  | 'insufficient_user_authentication'
  | 'rate_limited'
  | 'zone_unavailable'
  /** The token matched the revocation list. */
  | 'revoked'
  | 'server_error';

/** The {@link DecisionReason} of a refusal. */
export function decisionReasonOf(denial: KeycardException): DecisionReason {
  return reasonOfCode(denial.code, denial.getStatus());
}

/** The {@link DecisionReason} of a denial code and the HTTP status it answers with. */
export function reasonOfCode(code: DenialReason, status: number): DecisionReason {
  switch (code) {
    case 'no_credentials':
    case 'insufficient_scope':
    case 'insufficient_user_authentication':
    case 'rate_limited':
    case 'zone_unavailable':
    case 'revoked':
      return code;
    case 'freshness_unknown':
      return 'zone_unavailable';
    case 'expired':
      return 'token_expired';
    case 'insufficient_permission':
      return 'insufficient_scope';
    default:
      if (status === 400) return 'invalid_request';
      return status >= 500 ? 'server_error' : 'invalid_token';
  }
}
