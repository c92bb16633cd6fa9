import type { Cluster, Redis } from 'ioredis';
import { isEntry, targetKey, type RevocationEntry } from './revocation.js';
import type { ClaimOutcome, RevocationChange, RevocationFeed, RevocationFeedSink } from './revocation-feed.js';

/**
 * Options of {@link RedisRevocationFeed}.
 * @publicApi
 */
export interface RedisRevocationFeedOptions {
  /** An ioredis client the application owns and closes; the feed opens one duplicate for pub/sub and closes it. */
  redis: Redis;
  /** Prefix of every key and of the channel. @default 'keycard:revocation:' */
  prefix?: string;
}

/** Keys read per MGET while the snapshot is read. */
const SNAPSHOT_BATCH = 1000;

/**
 * Shares revocations between instances through Redis: each entry is a key
 * `<prefix>e:<SHA-256 of its target>` holding the entry as JSON and expiring with it (`PXAT`), and
 * every change is published on `<prefix>changes`. An instance subscribes first, then reads the
 * keys (the snapshot), so a change published meanwhile is not missed; it reads them again each time
 * its subscriber reconnects. A SET's `jti` is claimed with `SET NX PX` under `<prefix>set:<jti>`.
 * No token is ever written to Redis: only claim values (`sid`, `sub`, agent id, `jti`).
 * @publicApi
 */
export class RedisRevocationFeed implements RevocationFeed {
  private readonly redis: Redis;
  private readonly prefix: string;
  private subscriber?: Redis;
  private sink?: RevocationFeedSink;

  /** @throws TypeError when `redis` is not an ioredis client. */
  constructor(options: RedisRevocationFeedOptions) {
    const redis = options?.redis as Redis | Cluster | undefined;
    if (typeof redis?.duplicate !== 'function' || typeof redis.publish !== 'function') {
      throw new TypeError("RedisRevocationFeed: 'redis' must be an ioredis client");
    }
    this.redis = redis as Redis;
    this.prefix = options.prefix ?? 'keycard:revocation:';
  }

  private get channel(): string {
    return `${this.prefix}changes`;
  }

  async connect(sink: RevocationFeedSink): Promise<void> {
    this.sink = sink;
    const subscriber = this.redis.duplicate();
    this.subscriber = subscriber;
    subscriber.on('error', () => undefined); // reported through 'close' / 'ready' below, never thrown
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.deliver(message);
    });
    subscriber.on('close', () => sink.available(false));
    // ioredis subscribes again on reconnection; the snapshot is read again, as what was published while down was lost.
    subscriber.on('ready', () => void this.resume());
    await this.resume();
  }

  async publish(change: RevocationChange): Promise<void> {
    const key = this.keyOf(change.entry);
    const message = JSON.stringify(change);
    const batch = this.redis.multi();
    if (change.op === 'revoke') batch.set(key, JSON.stringify(change.entry), 'PXAT', Math.floor(change.entry.expiresAtMs));
    else batch.del(key);
    batch.publish(this.channel, message);
    const results = await batch.exec();
    const failed = results?.find(([error]) => error !== null);
    if (results === null || failed !== undefined) throw new Error('Redis refused the revocation');
  }

  async claimOnce(id: string, fingerprint: string, ttlMs: number): Promise<ClaimOutcome> {
    const key = `${this.prefix}set:${id}`;
    const set = await this.redis.set(key, fingerprint, 'PX', Math.max(1, Math.floor(ttlMs)), 'NX');
    if (set === 'OK') return 'first';
    return (await this.redis.get(key)) === fingerprint ? 'same' : 'different';
  }

  async lease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const key = `${this.prefix}lease:${name}`;
    const ttl = Math.max(1, Math.floor(ttlMs));
    if ((await this.redis.set(key, holder, 'PX', ttl, 'NX')) === 'OK') return true;
    if ((await this.redis.get(key)) !== holder) return false;
    await this.redis.pexpire(key, ttl);
    return true;
  }

  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber === undefined) return;
    subscriber.removeAllListeners('close');
    subscriber.removeAllListeners('ready');
    subscriber.disconnect();
  }

  /** (Re)subscribes and reads the snapshot; marks the feed available once both are done. */
  private async resume(): Promise<void> {
    const { subscriber, sink } = this;
    if (subscriber === undefined || sink === undefined) return;
    try {
      await subscriber.subscribe(this.channel);
      await this.readSnapshot(sink);
      sink.available(true);
    } catch {
      sink.available(false);
    }
  }

  private async readSnapshot(sink: RevocationFeedSink): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}e:*`, 'COUNT', SNAPSHOT_BATCH);
      cursor = next;
      if (keys.length === 0) continue;
      const values = await this.redis.mget(...keys);
      for (const value of values) {
        const entry = parse(value);
        if (entry !== undefined) sink.changed({ op: 'revoke', entry });
      }
    } while (cursor !== '0');
  }

  private deliver(message: string): void {
    const change = parseChange(message);
    if (change !== undefined) this.sink?.changed(change);
  }

  private keyOf(entry: Pick<RevocationEntry, 'kind' | 'issuer' | 'value' | 'subject'>): string {
    return `${this.prefix}e:${targetKey(entry)}`;
  }
}

function parse(value: string | null): RevocationEntry | undefined {
  if (value === null) return undefined;
  try {
    const entry: unknown = JSON.parse(value);
    return isEntry(entry) ? entry : undefined;
  } catch {
    return undefined;
  }
}

/** A change read from the channel; anything malformed is dropped. */
function parseChange(message: string): RevocationChange | undefined {
  try {
    const change = JSON.parse(message) as { op?: unknown; entry?: unknown };
    if (change.op === 'revoke' && isEntry(change.entry)) return { op: 'revoke', entry: change.entry };
    if (change.op === 'restore' && isEntry({ ...(change.entry as object), expiresAtMs: 0, source: '' })) {
      const { kind, issuer, value, subject } = change.entry as RevocationEntry;
      return { op: 'restore', entry: { kind, issuer, value, subject } };
    }
  } catch {
    // not JSON: dropped
  }
  return undefined;
}
