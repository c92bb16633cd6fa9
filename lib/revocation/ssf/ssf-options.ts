/**
 * The Shared Signals receiver (SSF 1.0, CAEP 1.0): where SETs come from and how they are trusted.
 * @publicApi
 */
export interface SsfReceiverOptions {
  /** The transmitter's issuer: the only `iss` a SET may carry (exact match). @default the first zone's issuer */
  issuer?: string;
  /**
   * The transmitter's key set. @default the zone's own keys (the zone's metadata `jwks_uri`)
   */
  jwksUri?: string;
  /** This receiver's audience: a SET's `aud` must be or contain it. */
  audience: string;
  /** Push delivery (RFC 8935): the path the module mounts, and the `authorization_header` the transmitter sends. */
  push?: {
    /** @default '/ssf/events' */
    path?: string;
    /** The exact `Authorization` header value the transmitter was given (SSF 1.0 §6.1.1), e.g. `Bearer <secret>`. */
    authorization: string;
  };
  /**
   * Poll delivery (RFC 8936): the transmitter's poll endpoint and the `Authorization` value to send.
   * With a feed, one instance polls at a time (a lease in Redis); SETs are acknowledged (or
   * reported in `setErrs`) in the next poll.
   */
  poll?: {
    url: string;
    authorization: string;
    /** Pause between polls that returned nothing, in ms. @default 1000 */
    intervalMs?: number;
    /** `maxEvents` per poll. @default 100 */
    maxEvents?: number;
  };
  /** The stream's id, for verification events (SSF 1.0 §8.1.4). */
  streamId?: string;
  /** The `iss` of the access tokens the SETs' subjects belong to. @default the first zone's issuer */
  tokenIssuer?: string;
}
