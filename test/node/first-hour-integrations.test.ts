/**
 * Issue 25, item 3 — integrations that install and stop cleanly, against a real `redis-server`:
 * ioredis 6 (the version `npm install ioredis` gives) with the Redis exchange store and the
 * throttler storage; Redis clients the module or the storage create are closed with the app; a
 * Redis outage costs one deadline per back-off window, not one per request; the throttler's 429
 * has the body of every other refusal. Node's test runner (see throttler.test.ts for why).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule, type ThrottlerStorage } from '@nestjs/throttler';
import { Redis } from 'ioredis';
import { Redis as Redis6 } from 'ioredis6';
import { RedisExchangedTokenStore } from '../../lib/redis/index.js';
import { TestZone } from '../../lib/testing/index.js';
import { FailSafeThrottlerStorage, KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { send } from '../support/http.js';
import { startApp, type RunningApp } from '../support/keycard-app.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from '../support/redis-server.js';

const R = 'https://api.example.com';
const LIMIT = 2;
const KEYS = [{ id: 'k1', key: randomBytes(32).toString('base64') }];
const REFUSAL_429 = { error: 'rate_limited', error_description: 'Too many requests, retry later' };

/**
 * `@nest-lab/throttler-storage-redis` as an app with only ioredis 6 installed loads it: its own
 * `require('ioredis')` answered by ioredis 6 (here both majors are installed, and the storage
 * checks `instanceof` against the class it loaded).
 */
function storageClassOnIoredis6(): typeof ThrottlerStorageRedisService {
  const require = createRequire(import.meta.url);
  const v5 = require.resolve('ioredis');
  const v6 = require.resolve('ioredis6');
  const index = require.resolve('@nest-lab/throttler-storage-redis');
  const service = join(dirname(index), 'throttler-storage-redis.service.js');
  require(v6);
  const saved = { v5: require.cache[v5], index: require.cache[index], service: require.cache[service] };
  try {
    require.cache[v5] = require.cache[v6];
    delete require.cache[index];
    delete require.cache[service];
    return (require(index) as { ThrottlerStorageRedisService: typeof ThrottlerStorageRedisService }).ThrottlerStorageRedisService;
  } finally {
    require.cache[v5] = saved.v5;
    require.cache[index] = saved.index;
    require.cache[service] = saved.service;
  }
}

void describe('first hour: integrations', { skip: redisUnavailableReason() }, () => {
  let zone: TestZone;
  let redis: RunningRedis;
  let admin: Redis;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    redis = await startRedis();
    admin = new Redis(redis.port, '127.0.0.1');
  });
  after(async () => {
    admin.disconnect();
    await redis?.close();
    await zone?.stop();
  });

  const token = (agent: string) => zone.tokenFor({ agent, user: 'alice', scopes: ['orders:read'], audience: R });
  const get = (app: RunningApp, t: string) => send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${t}`]]);
  /** Connections the Redis server has, ours (`admin`) included. */
  const connections = async () => String(await admin.call('CLIENT', 'LIST')).trim().split('\n').length;
  const throttled = (storage: ThrottlerStorage) => ({
    imports: [ThrottlerModule.forRoot({ throttlers: [{ ttl: 60_000, limit: LIMIT }], storage })],
    providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
  });

  void it('ioredis 6: the exchange store seals, stores and reads back an entry', async () => {
    const client = new Redis6(redis.port, '127.0.0.1');
    try {
      // The store's types name ioredis 5 here (an app has one ioredis: then its own); the value is what counts.
      const store = new RedisExchangedTokenStore({ redis: client as unknown as Redis, keys: KEYS });
      const entry = { token: { accessToken: 'at-1', tokenType: 'Bearer', issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token', scope: 'a', scopes: ['a'] }, cacheUntil: Date.now() + 60_000 };
      await store.set('key-1', entry, 60_000);
      assert.equal((await store.get('key-1'))?.token.accessToken, 'at-1');
      assert.equal(String(await client.get('keycard:exchange:key-1')).includes('at-1'), false, 'sealed at rest');
    } finally {
      await client.quit();
    }
  });

  void it('ioredis 6: the throttler storage counts per agent through Redis; the 429 has the body of every refusal', async () => {
    const client = new Redis6(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const StorageOnV6 = storageClassOnIoredis6();
    const storage = new FailSafeThrottlerStorage(new StorageOnV6(client as unknown as Redis), { whenUnavailable: 'open' });
    const app = await startApp('express', { zoneUrl: zone.issuer, resource: R }, throttled(storage));
    try {
      const t = token('agent-v6');
      const statuses = [];
      for (let i = 0; i <= LIMIT; i++) statuses.push((await get(app, t)).status);
      assert.deepEqual(statuses, [200, 200, 429]);
      const limited = await get(app, t);
      assert.deepEqual(limited.json, REFUSAL_429);
      assert.ok(Number(limited.headers['retry-after']) >= 1);
      assert.equal(limited.headers['www-authenticate'], undefined);
      assert.equal(limited.text.includes(t), false);
    } finally {
      await app.close();
      await client.quit();
    }
  });

  void it('Redis clients created from a URL (the exchange store, the throttler storage) are closed with the app', async () => {
    const before = await connections();
    const store = new RedisExchangedTokenStore({ url: redis.url, keys: KEYS });
    const storage = new FailSafeThrottlerStorage(new ThrottlerStorageRedisService(redis.url, { maxRetriesPerRequest: 1 }), { whenUnavailable: 'open' });
    const app = await startApp('express', { zoneUrl: zone.issuer, resource: R, exchangeStore: store }, throttled(storage));
    assert.equal((await get(app, token('agent-url'))).status, 200);
    await store.get('warm-up'); // the store connects on first use
    assert.equal(await connections(), before + 2);
    await app.close();
    for (let i = 0; i < 50 && (await connections()) > before; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await connections(), before, 'both clients closed by app.close()');
  });

  void it('S2 a Redis outage costs one deadline per back-off window: requests meanwhile do not ask Redis', async () => {
    const down = await startRedis();
    const client = new Redis(down.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    let asked = 0;
    const inner = new ThrottlerStorageRedisService(client);
    const counting: ThrottlerStorage = { increment: (...args: Parameters<ThrottlerStorage['increment']>) => ((asked += 1), inner.increment(...args)) };
    const lines: string[] = [];
    const logger = { log: (m: string) => lines.push(m), warn: (m: string) => lines.push(m) };
    const storage = new FailSafeThrottlerStorage(counting, { whenUnavailable: 'open', timeoutMs: 200, backOffMs: 60_000, logger });
    const app = await startApp('express', { zoneUrl: zone.issuer, resource: R }, throttled(storage));
    try {
      const t = token('agent-outage');
      assert.equal((await get(app, t)).status, 200);
      await down.close();
      asked = 0;
      const statuses = [];
      for (let i = 0; i < 10; i++) statuses.push((await get(app, t)).status);
      assert.deepEqual(statuses, Array(10).fill(200), 'fail open: served');
      assert.equal(asked, 1, 'only the first request after the failure asked Redis');
      assert.equal(lines.filter((l) => l.startsWith('Throttler storage unavailable')).length, 1);
    } finally {
      await app.close();
      client.disconnect();
    }
  });
});
