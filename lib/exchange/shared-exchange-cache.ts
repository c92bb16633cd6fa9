import type { KeycardLogger } from '../keycard-options.js';
import { withinDeadline } from '../within-deadline.js';
import type { ExchangedToken } from './exchanged-token.interface.js';
import type { ExchangedTokenStore } from './exchanged-token-store.interface.js';

/** Longest wait for the shared store, in ms: past it the exchange goes on as if the entry were missing. */
const STORE_DEADLINE_MS = 250;

/**
 * The service's side of an {@link ExchangedTokenStore}: a store that errs or is slow never fails or
 * holds up an exchange; the outage is logged once, and so is the recovery.
 */
export class SharedExchangeCache {
  private unavailable = false;

  constructor(
    private readonly store: ExchangedTokenStore,
    private readonly logger: KeycardLogger,
    private readonly now: () => number,
  ) {}

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
    try {
      const result = await withinDeadline(Promise.resolve().then(operation), STORE_DEADLINE_MS);
      if (this.unavailable) {
        this.unavailable = false;
        this.logger.log('Shared exchange cache answers again');
      }
      return result;
    } catch (error) {
      if (!this.unavailable) {
        this.unavailable = true;
        this.logger.warn(`Shared exchange cache unavailable (${error instanceof Error ? error.name : 'unknown error'}); exchanging without it until it answers again`);
      }
      return undefined;
    }
  }
}
