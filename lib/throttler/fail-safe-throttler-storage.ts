import type { EventEmitter } from 'node:events';
import { Logger, type LoggerService } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import { logSafe } from '../logging/log-safe.js';
import { StoreOutage } from '../store-outage.js';
import { withinDeadline } from '../within-deadline.js';

/** What `@nestjs/throttler` expects back from a storage (times in seconds). */
type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/**
 * Options of {@link FailSafeThrottlerStorage}.
 * @publicApi
 */
export interface FailSafeThrottlerStorageOptions {
  /**
   * What the limits do while the shared storage does not answer: `'open'` lets every request through
   * unlimited (availability first), `'closed'` answers 429 with `Retry-After` (protection first).
   * Authentication is never affected either way.
   */
  whenUnavailable: 'open' | 'closed';
  /**
   * How long one counter update may take before the storage counts as unavailable, in ms. Keeps a
   * request from waiting on a client that queues commands while it reconnects.
   * @default 250
   */
  timeoutMs?: number;
  /**
   * After a failure, how long the storage is not asked (the limits fail open or closed at once), in
   * ms; then one request at a time asks it until it answers. So an outage costs at most one
   * `timeoutMs` wait per back-off window, not one per request.
   * @default 1000
   */
  backOffMs?: number;
  /** Where outages and recoveries are logged (once each). @default Nest's `Logger` with context `KeycardThrottler` */
  logger?: Pick<LoggerService, 'log' | 'warn'>;
}

const DEFAULT_TIMEOUT_MS = 250;
const DEFAULT_BACK_OFF_MS = 1_000;

/**
 * A `@nestjs/throttler` storage in front of a shared one (e.g. `ThrottlerStorageRedisService` from
 * `@nest-lab/throttler-storage-redis`) that never lets the storage fail a request: when it errs or
 * does not answer within `timeoutMs`, the limit fails open or closed as configured, instead of the
 * throttler guard throwing (a 500) or waiting. After a failure the storage is left alone for
 * `backOffMs` (1 s), so requests during an outage do not each wait `timeoutMs`. The outage is
 * logged once, and so is the recovery.
 *
 * @example
 * ```ts
 * ThrottlerModule.forRoot({
 *   throttlers: [{ ttl: 60_000, limit: 100 }],
 *   storage: new FailSafeThrottlerStorage(new ThrottlerStorageRedisService(redis), { whenUnavailable: 'open' }),
 * })
 * ```
 * @publicApi
 */
export class FailSafeThrottlerStorage implements ThrottlerStorage {
  private readonly timeoutMs: number;
  private readonly logger: Pick<LoggerService, 'log' | 'warn'>;
  private readonly outage: StoreOutage;

  constructor(
    private readonly storage: ThrottlerStorage,
    private readonly options: FailSafeThrottlerStorageOptions,
  ) {
    if (options?.whenUnavailable !== 'open' && options?.whenUnavailable !== 'closed') {
      throw new TypeError("FailSafeThrottlerStorage: 'whenUnavailable' must be 'open' or 'closed'");
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new TypeError("FailSafeThrottlerStorage: 'timeoutMs' must be a whole number of ms > 0");
    this.timeoutMs = timeoutMs;
    const backOffMs = options.backOffMs ?? DEFAULT_BACK_OFF_MS;
    if (!Number.isInteger(backOffMs) || backOffMs < 0) throw new TypeError("FailSafeThrottlerStorage: 'backOffMs' must be a whole number of ms ≥ 0");
    this.outage = new StoreOutage(backOffMs);
    this.logger = options.logger ?? new Logger('KeycardThrottler');
    quietReconnectionErrors(storage);
  }

  async increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    if (!this.outage.mayAsk()) return this.fallback(ttl, limit, blockDuration);
    try {
      const record = await withinDeadline(this.storage.increment(key, ttl, limit, blockDuration, throttlerName), this.timeoutMs);
      if (this.outage.answered()) this.logger.log('Throttler storage answers again: per-agent limits are shared again');
      return record;
    } catch (error) {
      if (this.outage.failed()) {
        this.logger.warn(`Throttler storage unavailable (${describe(error)}); per-agent limits fail ${this.options.whenUnavailable} until it answers again`);
      }
      return this.fallback(ttl, limit, blockDuration);
    }
  }

  /** Lets Nest close the wrapped storage (it may own a Redis connection). */
  onModuleDestroy(): unknown {
    return (this.storage as { onModuleDestroy?: () => unknown }).onModuleDestroy?.();
  }

  private fallback(ttl: number, limit: number, blockDuration: number): ThrottlerStorageRecord {
    if (this.options.whenUnavailable === 'open') {
      return { totalHits: 0, timeToExpire: Math.ceil(ttl / 1000), isBlocked: false, timeToBlockExpire: 0 };
    }
    return { totalHits: limit + 1, timeToExpire: Math.ceil(ttl / 1000), isBlocked: true, timeToBlockExpire: Math.max(1, Math.ceil(blockDuration / 1000)) };
  }
}

/**
 * Gives the wrapped storage's ioredis client (`ThrottlerStorageRedisService#redis`) an 'error'
 * listener when it has none (it created the client from a URL, or the app added none): without one,
 * ioredis prints "Unhandled error event" on every failed reconnection while Redis is down. The
 * outage and the recovery are logged once each by {@link FailSafeThrottlerStorage.increment}
 * instead. A listener of the app's own is left alone and stays the only one.
 */
function quietReconnectionErrors(storage: ThrottlerStorage): void {
  const client = (storage as { redis?: unknown }).redis as Partial<Pick<EventEmitter, 'on' | 'listenerCount'>> | undefined;
  if (typeof client?.on !== 'function' || typeof client.listenerCount !== 'function') return;
  if (client.listenerCount('error') === 0) client.on('error', () => undefined);
}

/** The error's class, code and the start of its message, without credentials a connection URL may carry. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown error';
  const code = (error as { code?: unknown }).code;
  const message = error.message.slice(0, 120).replace(/\/\/[^@/\s]*@/g, '//');
  return logSafe(`${error.name}${typeof code === 'string' ? ` ${code}` : ''}: ${message}`);
}
