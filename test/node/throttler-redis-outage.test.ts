/**
 * A Redis outage behind `FailSafeThrottlerStorage` wrapping a `ThrottlerStorageRedisService` that
 * created its own ioredis client from a URL (the docs/scale-out.md setup): the module's two log
 * lines (outage, recovery) are the only output, never ioredis' "Unhandled error event" on every
 * reconnection attempt. Node's test runner, not Jest: @nestjs/throttler is CommonJS (see throttler.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import type { Redis } from 'ioredis';
import { TestZone } from '../../lib/testing/index.js';
import { FailSafeThrottlerStorage, KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { send } from '../support/http.js';
import { startApp, type RunningApp } from '../support/keycard-app.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from '../support/redis-server.js';

const R = 'https://api.example.com';

/** The next `event` of the client; unlike `events.once` it adds no 'error' listener, which would hide the fault. */
const next = (client: Redis, event: string) => new Promise<void>((resolve) => client.once(event, () => resolve()));

void describe('Redis outage behind a storage that owns its client', { skip: redisUnavailableReason() }, () => {
  let zone: TestZone;
  let redis: RunningRedis;
  let app: RunningApp;
  let client: Redis;
  const lines: string[] = [];
  const printed: string[] = [];
  const originalError = console.error;
  const originalWrite = process.stderr.write.bind(process.stderr);

  before(async () => {
    zone = await TestZone.start({ audience: R });
    redis = await startRedis();
    // ioredis prints through console.error; anything else written to stderr is caught as well.
    console.error = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      printed.push(String(chunk));
      return originalWrite(chunk, ...rest);
    }) as typeof process.stderr.write;
    const redisStorage = new ThrottlerStorageRedisService(redis.url, { maxRetriesPerRequest: 1 });
    client = redisStorage.redis as Redis;
    const logger = { log: (m: string) => void lines.push(m), warn: (m: string) => void lines.push(m) };
    const storage = new FailSafeThrottlerStorage(redisStorage, { whenUnavailable: 'open', timeoutMs: 200, backOffMs: 0, logger });
    app = await startApp(
      'express',
      { zoneUrl: zone.issuer, resource: R },
      {
        imports: [ThrottlerModule.forRoot({ throttlers: [{ ttl: 60_000, limit: 100 }], storage })],
        providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
      },
    );
  });
  after(async () => {
    console.error = originalError;
    process.stderr.write = originalWrite;
    await app?.close();
    await redis?.close();
    await zone?.stop();
  });

  const get = (t: string) => send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${t}`]]);

  void it('S2 Redis stops and comes back → one outage line, one recovery line, no "Unhandled error event"', async () => {
    const t = zone.issueToken({ client_id: 'agent-o', sub: 'alice', scope: 'orders:read' });
    assert.equal((await get(t)).status, 200);
    await redis.stop();
    // Let the client fail several reconnection attempts (each one an 'error' event) while requests come in.
    for (let attempt = 0; attempt < 3; attempt++) {
      await next(client, 'reconnecting');
      assert.equal((await get(t)).status, 200, 'fail open: served while Redis is gone');
    }
    const ready = next(client, 'ready'); // before the restart: the client may be ready before startRedis resolves
    redis = await startRedis({ port: redis.port });
    await ready;
    assert.equal((await get(t)).status, 200);
    assert.equal(printed.filter((p) => p.includes('Unhandled error event')).length, 0, printed.join('\n'));
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0], /^Throttler storage unavailable \(.*\); per-agent limits fail open until it answers again$/);
    assert.equal(lines[1], 'Throttler storage answers again: per-agent limits are shared again');
    for (const line of [...lines, ...printed, ...app.logger.lines]) assert.equal(line.includes(t), false, 'a token reached a log line');
  });
});
