import type { Redis, Cluster, RedisOptions } from 'ioredis';
import { requireFromHost } from '../zone/host-require.cjs';
import type { ExchangedToken } from '../exchange/exchanged-token.interface.js';
import type { ExchangedTokenStore, StoredExchangedToken } from '../exchange/exchanged-token-store.interface.js';
import { TokenCipher, type TokenCipherKey } from './token-cipher.js';

/**
 * Options of {@link RedisExchangedTokenStore}.
 * @publicApi
 */
export interface RedisExchangedTokenStoreOptions {
  /** An ioredis client (or cluster) the application owns and closes. Give this or {@link url}. */
  redis?: Redis | Cluster;
  /**
   * A Redis URL (`redis://host:6379/0`): the store creates its own client (ioredis, one retry per
   * command, errors left to the outage log) and closes it when the app closes. Give this or {@link redis}.
   */
  url?: string;
  /** More ioredis options for the client created from {@link url}. */
  redisOptions?: RedisOptions;
  /** AES-256-GCM keys; the first encrypts, all decrypt (rotation: put the new key first, drop the old one after the longest token lifetime). */
  keys: readonly TokenCipherKey[];
  /** Prefix of every key written. @default 'keycard:exchange:' */
  prefix?: string;
}

/** What is sealed: the token's fields, with times as epoch ms. */
interface Entry {
  a: string;
  t: string;
  i: string;
  s: string;
  e?: number;
  x?: number;
  u: number;
}

/**
 * A Redis cache of exchanged tokens shared by several instances (the `exchangeStore` option). Keys
 * are `<prefix><hash>` (the service's SHA-256 of subject token and request); values are encrypted with
 * AES-256-GCM and expire with the entry (`SET … PX`). Unreadable entries — unknown key id, altered,
 * malformed — count as missing.
 *
 * @example
 * ```ts
 * // RedisExchangedTokenStore comes from nestjs-keycard/redis, Redis from ioredis
 * KeycardModule.forRoot({
 *   zoneUrl, clientCredentials,
 *   exchangeStore: new RedisExchangedTokenStore({ redis: new Redis(process.env.REDIS_URL), keys: [{ id: 'k1', key: process.env.EXCHANGE_CACHE_KEY }] }),
 * })
 * ```
 * With `url` the store owns its client and the module closes it with the app; with `redis` the
 * app owns (and closes) the client it gave.
 * @throws TypeError from the constructor when `redis`/`url` or `keys` are invalid
 * @publicApi
 */
export class RedisExchangedTokenStore implements ExchangedTokenStore {
  private readonly redis: Redis | Cluster;
  private readonly cipher: TokenCipher;
  private readonly prefix: string;
  /** True when the store created its client (from `url`) and so closes it. */
  private readonly ownsClient: boolean;

  constructor(options: RedisExchangedTokenStoreOptions) {
    this.cipher = new TokenCipher(options?.keys);
    this.ownsClient = options.redis === undefined;
    this.redis = options.redis ?? clientFor(options);
    if (typeof this.redis.get !== 'function' || typeof this.redis.set !== 'function') {
      throw new TypeError("RedisExchangedTokenStore: 'redis' must be an ioredis client");
    }
    this.prefix = options.prefix ?? 'keycard:exchange:';
  }

  /** Closes the client the store created from `url` (the module calls it when the app closes); never one it was given. */
  async close(): Promise<void> {
    if (!this.ownsClient || this.redis.status === 'end') return;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  async get(key: string): Promise<StoredExchangedToken | undefined> {
    const name = this.prefix + key;
    const sealed = await this.redis.get(name);
    const text = sealed === null ? undefined : this.cipher.open(sealed, name);
    return text === undefined ? undefined : decode(text);
  }

  async set(key: string, entry: StoredExchangedToken, ttlMs: number): Promise<void> {
    const name = this.prefix + key;
    await this.redis.set(name, this.cipher.seal(encode(entry), name), 'PX', Math.max(1, Math.floor(ttlMs)));
  }
}

/** A client for `options.url`, from the app's own ioredis (an optional peer, loaded only here). */
function clientFor(options: RedisExchangedTokenStoreOptions): Redis {
  if (typeof options?.url !== 'string' || options.url === '') {
    throw new TypeError("RedisExchangedTokenStore: give 'redis' (an ioredis client) or 'url' (a Redis URL)");
  }
  const { Redis: RedisClient } = requireFromHost<typeof import('ioredis')>('ioredis');
  const client = new RedisClient(options.url, { maxRetriesPerRequest: 1, ...options.redisOptions });
  client.on('error', () => undefined); // an outage is logged once by the exchange service, not per reconnection
  return client;
}

function encode({ token, cacheUntil }: StoredExchangedToken): string {
  const entry: Entry = {
    a: token.accessToken,
    t: token.tokenType,
    i: token.issuedTokenType,
    s: token.scope,
    e: token.expiresIn,
    x: token.expiresAt?.getTime(),
    u: cacheUntil,
  };
  return JSON.stringify(entry);
}

function decode(text: string): StoredExchangedToken | undefined {
  let entry: Partial<Entry>;
  try {
    entry = JSON.parse(text) as Partial<Entry>;
  } catch {
    return undefined;
  }
  const { a, t, i, s, e, x, u } = entry;
  if (typeof a !== 'string' || typeof t !== 'string' || typeof i !== 'string' || typeof s !== 'string' || typeof u !== 'number') return undefined;
  if ((e !== undefined && typeof e !== 'number') || (x !== undefined && typeof x !== 'number')) return undefined;
  const token: ExchangedToken = Object.freeze({
    accessToken: a,
    tokenType: t,
    expiresIn: e,
    expiresAt: x === undefined ? undefined : new Date(x),
    scope: s,
    scopes: Object.freeze(s.split(' ').filter(Boolean)),
    issuedTokenType: i,
  });
  return { token, cacheUntil: u };
}
