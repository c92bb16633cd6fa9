/**
 * What went wrong, in the terms an operator acts on:
 * - `oauth`: the zone answered with an OAuth error (`code` holds it);
 * - `invalid_response`: the zone answered 200 with something that is not a token response, or a
 *   non-JSON error page;
 * - `network`: no answer (refused, reset, redirect not followed, body too large);
 * - `timeout`: no complete answer before the deadline;
 * - `unavailable`: the zone is unreachable, overloaded (429/503) or its metadata unusable;
 * - `config`: this service's own configuration (no credentials, unreadable token file …);
 * - `untrusted_issuer`: with several zones, the subject token's `iss` (or the `zone` asked for) names none of them (nothing was sent);
 * - `zone_required`: with several zones, a grant that names no zone (`ClientCredentialsService`,
 *   `ImpersonationService`) was asked for outside any call verified at one of them (nothing was sent).
 * @publicApi
 */
export type TokenExchangeErrorKind =
  | 'oauth' | 'invalid_response' | 'network' | 'timeout' | 'unavailable' | 'config' | 'untrusted_issuer' | 'zone_required';

/**
 * Thrown by `TokenExchangeService.exchange()`. The message never holds a token, secret, assertion or
 * the zone's `error_description` (which may carry markup or CR/LF, catalogue I24).
 * @publicApi
 */
export class TokenExchangeError extends Error {
  constructor(
    message: string,
    readonly kind: TokenExchangeErrorKind,
    /** The OAuth `error` code from the zone (e.g. `invalid_grant`), when it sent one as JSON. */
    readonly code?: string,
    /** The HTTP status the zone answered with, when it answered. */
    readonly status?: number,
    /** Seconds the zone asked to wait (`Retry-After`), when it did; 5 for a `WorkloadTokenFileError` (the API's own `Retry-After`). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'TokenExchangeError';
  }

  /** True when the same exchange may succeed later without any change on this side. */
  get retryable(): boolean {
    return this.kind === 'network' || this.kind === 'timeout' || this.kind === 'unavailable' ||
      (this.status !== undefined && this.status >= 500);
  }
}
