import type { Cluster, Redis } from 'ioredis';
import type { DpopReplayStore } from '../dpop/dpop-replay-store.js';

/**
 * Options of {@link RedisDpopReplayStore}.
 * @publicApi
 */
export interface RedisDpopReplayStoreOptions {
  /** An ioredis client (or cluster) the application owns and closes. */
  redis: Redis | Cluster;
  /** Prefix of every key written. @default 'keycard:dpop:' */
  prefix?: string;
}

/**
 * DPoP proof replay records shared by every instance (catalogue H14, Q37): one `SET key 1 NX PX`
 * per proof, one round trip; the key is the module's hash of thumbprint and `jti`, and expires when
 * the proof's window closes. A replay sent to any instance finds the key and is refused.
 *
 * @example
 * ```ts
 * KeycardModule.forRoot({ zoneUrl, resource, dpop: { mode: 'allowed', replayStore: new RedisDpopReplayStore({ redis }) } })
 * ```
 * @throws TypeError from the constructor when `redis` is not an ioredis client
 * @publicApi
 */
export class RedisDpopReplayStore implements DpopReplayStore {
  private readonly redis: Redis | Cluster;
  private readonly prefix: string;

  constructor(options: RedisDpopReplayStoreOptions) {
    if (typeof options?.redis?.set !== 'function') throw new TypeError("RedisDpopReplayStore: 'redis' must be an ioredis client");
    this.redis = options.redis;
    this.prefix = options.prefix ?? 'keycard:dpop:';
  }

  remember(key: string, expiresAtMs: number, nowMs: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(expiresAtMs - nowMs));
    // No async wrapper: the client's promise is the only one (one fewer per request).
    return this.redis.set(`${this.prefix}${key}`, '1', 'PX', ttl, 'NX').then(isSet);
  }
}

/** `SET … NX` answers `OK` when it set the key, `null` when the key was already there. */
function isSet(reply: unknown): boolean {
  return reply === 'OK';
}
