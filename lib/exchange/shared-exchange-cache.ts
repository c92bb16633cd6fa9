import type { KeycardLogger } from '../keycard-options.js';
import { StoreOutage } from '../store-outage.js';
import { withinDeadline } from '../within-deadline.js';
import type { ExchangedToken } from './exchanged-token.interface.js';
import type { ExchangedTokenStore } from './exchanged-token-store.interface.js';

/** Longest wait for the shared store, in ms: past it the exchange goes on as if the entry were missing. */
const STORE_DEADLINE_MS = 250;
/** After a failure the store is left alone this long (ms): an outage costs one deadline per window, not one per exchange. */
const STORE_BACK_OFF_MS = 1_000;

/**
 * The service's side of an {@link ExchangedTokenStore}: a store that errs or is slow never fails or
 * holds up an exchange, and after a failure it is skipped for a second ({@link StoreOutage}); the
 * outage is logged once, and so is the recovery.
 */
export class SharedExchangeCache {
  private readonly outage: StoreOutage;

  constructor(
    private readonly store: ExchangedTokenStore,
    private readonly logger: KeycardLogger,
    private readonly now: () => number,
  ) {
    this.outage = new StoreOutage(STORE_BACK_OFF_MS, now);
  }

  /** The shared entry under `key` with its `cacheUntil`, when there is a live one. */
  async get(key: string): Promise<{ token: ExchangedToken; cacheUntil: number } | undefined> {
    const entry = await this.call(() => this.store.get(key));
    return entry && entry.cacheUntil > this.now() ? entry : undefined;
  }

  async set(key: string, token: ExchangedToken, cacheUntil: number): Promise<void> {
    const ttlMs = Math.floor(cacheUntil - this.now());
    if (ttlMs > 0) await this.call(() => this.store.set(key, { token, cacheUntil }, ttlMs));
  }

  private async call<T>(operation: () => Promise<T>): Promise<T | undefined> {
    if (!this.outage.mayAsk()) return undefined;
    try {
      const result = await withinDeadline(Promise.resolve().then(operation), STORE_DEADLINE_MS);
      if (this.outage.answered()) this.logger.log('Shared exchange cache answers again');
      return result;
    } catch (error) {
      if (this.outage.failed()) {
        this.logger.warn(`Shared exchange cache unavailable (${error instanceof Error ? error.name : 'unknown error'}); exchanging without it until it answers again`);
      }
      return undefined;
    }
  }
}
