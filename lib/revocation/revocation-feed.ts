import type { RevocationEntry } from './revocation.js';

/**
 * A change to the revocation list, as instances share it: an entry added, or the entry of a
 * target lifted (restore).
 * @publicApi
 */
export type RevocationChange =
  | { readonly op: 'revoke'; readonly entry: RevocationEntry }
  | { readonly op: 'restore'; readonly entry: Pick<RevocationEntry, 'kind' | 'issuer' | 'value' | 'subject'> };

/** What a {@link RevocationFeed} reports to the instance it serves. */
export interface RevocationFeedSink {
  /** A change taken elsewhere (or an entry of the snapshot read at start-up and on reconnection). */
  changed(change: RevocationChange): void;
  /** Whether the feed can vouch that this instance knows every revocation (false while Redis is down). */
  available(up: boolean): void;
}

/** The answer of {@link RevocationFeed.claimOnce}. */
export type ClaimOutcome = 'first' | 'same' | 'different';

/**
 * How the instances of a service share their revocations (e.g. `RedisRevocationFeed` from
 * `nestjs-keycard/redis`): changes published by one reach the others, an instance that starts
 * later reads what was revoked before, and a SET's `jti` is accepted once in total.
 * @publicApi
 */
export interface RevocationFeed {
  /**
   * Starts delivering changes to `sink`: subscribes first, then reads the snapshot, so nothing
   * published meanwhile is missed (catalogue X26). Resolves once the snapshot is read, or once it
   * is known that the store is unreachable (then `available(false)`).
   */
  connect(sink: RevocationFeedSink): Promise<void>;
  /** Shares `change` with every instance (this one already applied it). @throws when it cannot be shared now. */
  publish(change: RevocationChange): Promise<void>;
  /**
   * Records `id` (a SET's `jti`) with `fingerprint` (a hash of the SET) for `ttlMs`, once across
   * instances: `first` the first time, `same` for the same SET again, `different` for another SET
   * with the same id. @throws when the store cannot be reached.
   */
  claimOnce(id: string, fingerprint: string, ttlMs: number): Promise<ClaimOutcome>;
  /**
   * Takes or renews the lease `name` for `holder` for `ttlMs` (one SSF poller at a time across
   * instances). @returns whether `holder` holds it now. @throws when the store cannot be reached.
   */
  lease?(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Stops delivering and releases what {@link connect} opened (not the application's client). */
  close(): Promise<void>;
}
