import type { DpopKey } from '../dpop/dpop-key.js';
/**
 * What `TokenExchangeService.exchange()` asks the zone for (RFC 8693 §2.1).
 * @publicApi
 */
export interface TokenExchangeRequest {
  /** The user's access token this service received (never logged; cached only as a hash). */
  subjectToken: string;
  /** The API the new token is for (RFC 8707 `resource`), e.g. `https://api.example.com`. */
  resource: string;
  /** Scopes to ask for: a space-delimited string or a list. @default what the zone grants */
  scope?: string | readonly string[];
  /** Logical name of the target service, when the zone uses `audience` instead of `resource`. */
  audience?: string;
  /** A token representing the acting party (RFC 8693 delegation); sent with its type. */
  actorToken?: string;
  /** @default the zone's choice (an access token) */
  requestedTokenType?: string;
  /**
   * Asks for a DPoP-bound token (RFC 9449 §5): each request to the token endpoint carries a proof
   * by this key (one retry with the zone's nonce on `use_dpop_nonce`, §8), and the cache keys on its
   * thumbprint. With `required: true` a `Bearer` answer is discarded (`invalid_response`); without,
   * it is accepted and logged once per answer (decision Q40).
   */
  dpop?: DpopKey | { key: DpopKey; required?: boolean };
}

/**
 * A token obtained by exchange, scoped to one API.
 * @publicApi
 */
export interface ExchangedToken {
  readonly accessToken: string;
  /** `Bearer`, or `N_A` for tokens that are not access tokens (RFC 8693 §2.2.1). */
  readonly tokenType: string;
  /** Lifetime in seconds as the zone gave it, if it did. */
  readonly expiresIn?: number;
  readonly expiresAt?: Date;
  /** Granted scopes, space-delimited (the requested ones when the zone did not say). */
  readonly scope: string;
  readonly scopes: readonly string[];
  readonly issuedTokenType: string;
}
