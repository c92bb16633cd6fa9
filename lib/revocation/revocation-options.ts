import type { RevocationFeed } from './revocation-feed.js';
import type { SsfReceiverOptions } from './ssf/ssf-options.js';

/** Injection token of the normalised {@link KeycardRevocationOptions}. */
export const KEYCARD_REVOCATION_OPTIONS = 'KEYCARD:REVOCATION_OPTIONS';

/**
 * Options of `KeycardRevocationModule.forRoot()`.
 * @publicApi
 */
export interface KeycardRevocationOptions {
  /**
   * The longest lifetime (`exp − iat`, seconds) of the access tokens the zone issues. A revocation
   * entry lives this long plus the clock tolerance, so it outlives every token it can match and is
   * never kept forever; a token that claims a longer lifetime is refused (401 `invalid_token`).
   * Required: 1 s to 31 days.
   */
  maxTokenLifetimeSeconds: number;
  /**
   * Shares revocations with the other instances, e.g. `new RedisRevocationFeed({ redis })` from
   * `nestjs-keycard/redis`. @default none (each instance knows its own revocations only)
   */
  feed?: RevocationFeed;
  /** Receive the zone's revocations as Shared Signals (SSF/CAEP Security Event Tokens). @default off */
  ssf?: SsfReceiverOptions;
}

/** {@link KeycardRevocationOptions} after validation. */
export interface RevocationOptions {
  readonly maxTokenLifetimeMs: number;
  readonly feed?: RevocationFeed;
  readonly ssf?: SsfReceiverOptions;
}

const MAX_LIFETIME_SECONDS = 31 * 24 * 3600;

/** @throws TypeError naming the option when it is invalid. */
export function normaliseRevocationOptions(options: KeycardRevocationOptions): RevocationOptions {
  const lifetime = options?.maxTokenLifetimeSeconds;
  if (typeof lifetime !== 'number' || !Number.isInteger(lifetime) || lifetime < 1 || lifetime > MAX_LIFETIME_SECONDS) {
    throw new TypeError(`KeycardRevocationModule: 'maxTokenLifetimeSeconds' must be an integer from 1 to ${MAX_LIFETIME_SECONDS}`);
  }
  const { feed } = options;
  if (feed !== undefined && (typeof feed.connect !== 'function' || typeof feed.publish !== 'function' || typeof feed.claimOnce !== 'function')) {
    throw new TypeError("KeycardRevocationModule: 'feed' must be a RevocationFeed (e.g. new RedisRevocationFeed({ redis }))");
  }
  return { maxTokenLifetimeMs: lifetime * 1000, feed, ssf: options.ssf };
}
