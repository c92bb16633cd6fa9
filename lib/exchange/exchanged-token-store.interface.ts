import type { ExchangedToken } from './exchanged-token.interface.js';

/**
 * An exchanged token as a shared store keeps it: the token and until when it may be served.
 * @publicApi
 */
export interface StoredExchangedToken {
  readonly token: ExchangedToken;
  /** Epoch ms after which the entry must not be served (shortly before the token or its subject token expires). */
  readonly cacheUntil: number;
}

/**
 * A cache of exchanged tokens shared by several instances of a service, behind the in-process one
 * (option `exchangeStore`), so that N instances pay for one exchange. `nestjs-keycard/redis` has a
 * Redis implementation that encrypts entries at rest.
 *
 * Keys are already hashes (SHA-256, base64url) of the subject token and the request: never a raw
 * token. Values hold an access token: an implementation must protect them at rest (encrypt) and let
 * them expire after `ttlMs`. Errors and slow answers are tolerated: the service then exchanges as if
 * the entry were missing, and logs the outage once.
 * @publicApi
 */
export interface ExchangedTokenStore {
  /** The entry stored under `key`, or undefined when there is none (or it cannot be read). */
  get(key: string): Promise<StoredExchangedToken | undefined>;
  /** Stores `entry` under `key` for `ttlMs` milliseconds (> 0). */
  set(key: string, entry: StoredExchangedToken, ttlMs: number): Promise<void>;
  /**
   * Called once when the app closes (`app.close()`, shutdown hooks): release what the store itself
   * opened, e.g. a Redis connection it created. Optional; a store must not close what it was given.
   */
  close?(): Promise<void> | void;
}
