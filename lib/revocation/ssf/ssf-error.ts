/**
 * The error codes of RFC 8935 §2.4 / RFC 8936 §2.4.4 (IANA "Security Event Token Error Codes"),
 * plus SSF 1.0 §8.1.4.1's `invalid_state`.
 */
export type SsfErrorCode =
  | 'invalid_request'
  | 'invalid_key'
  | 'invalid_issuer'
  | 'invalid_audience'
  | 'authentication_failed'
  | 'access_denied'
  | 'invalid_state';

/**
 * A SET refused, answered 400 `{ "err", "description" }` (RFC 8935 §2.3) with a fixed description
 * (never a claim value or library message), and no change to the revocation list.
 */
export class SsfError extends Error {
  constructor(
    readonly err: SsfErrorCode,
    readonly description: string,
  ) {
    super(description);
    this.name = 'SsfError';
  }
}

/** The fixed descriptions of refused SETs. */
export const SSF_DESCRIPTIONS = {
  authentication: 'The transmitter could not be authenticated',
  mediaType: 'The request must be a SET of type application/secevent+jwt',
  malformed: 'The body cannot be parsed as a SET',
  type: 'The SET must be explicitly typed secevent+jwt',
  critical: 'The SET header names an extension this receiver does not understand',
  key: 'The SET key or algorithm is not acceptable',
  signature: 'The SET signature could not be verified',
  issuer: 'The SET issuer is not the configured transmitter',
  audience: 'The SET audience does not name this receiver',
  claims: 'The SET claims are invalid',
  replay: 'The SET identifier was already used for another SET',
  events: 'The SET must carry exactly one well-formed event',
  subject: 'The SET subject belongs to another issuer',
  state: 'The verification state does not match',
  stream: 'The stream is not known to this receiver',
} as const;
