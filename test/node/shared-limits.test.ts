/**
 * Per-agent limits shared by several instances through a real `redis-server` (catalogue §S1–S2).
 * Node's test runner, not Jest: @nestjs/throttler is CommonJS (see throttler.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { Redis } from 'ioredis';
import { TestZone } from '../../lib/testing/index.js';
import { FailSafeThrottlerStorage, KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { parseChallenge, send } from '../support/http.js';
import { startApp, type AdapterName, type RunningApp } from '../support/keycard-app.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from '../support/redis-server.js';

const R = 'https://api.example.com';
const LIMIT = 5;

void describe('limits shared through Redis', { skip: redisUnavailableReason() }, () => {
  let zone: TestZone;
  let redis: RunningRedis;
  const clients: Redis[] = [];
  const apps: RunningApp[] = [];

  /** One API instance with its own Redis connection; the limits fail open or closed when Redis is gone. */
  async function instance(adapter: AdapterName, whenUnavailable: 'open' | 'closed'): Promise<RunningApp> {
    const client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined); // reconnection errors are expected once Redis stops (S2)
    await client.connect();
    clients.push(client);
    const holder: { app?: RunningApp } = {};
    const logger = { log: (m: string) => holder.app?.logger.log(m), warn: (m: string) => holder.app?.logger.warn(m) };
    const storage = new FailSafeThrottlerStorage(new ThrottlerStorageRedisService(client), { whenUnavailable, timeoutMs: 200, logger });
    holder.app = await startApp(
      adapter,
      { zoneUrl: zone.issuer, resource: R },
      {
        imports: [ThrottlerModule.forRoot({ throttlers: [{ ttl: 60_000, limit: LIMIT }], storage })],
        providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
      },
    );
    apps.push(holder.app);
    return holder.app;
  }

  let open: RunningApp;
  let closed: RunningApp;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    redis = await startRedis();
    open = await instance('express', 'open');
    closed = await instance('fastify', 'closed');
  });
  after(async () => {
    await Promise.all(apps.map((a) => a.close()));
    for (const client of clients) client.disconnect();
    await redis?.close();
    await zone?.stop();
  });

  const token = (clientId: string) => zone.issueToken({ client_id: clientId, sub: 'alice', scope: 'orders:read' });
  const get = (app: RunningApp, t: string) => send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${t}`]]);
  const logs = () => apps.flatMap((a) => a.logger.lines);

  function assertNoLeak(...tokens: string[]) {
    for (const line of logs()) for (const t of tokens) assert.equal(line.includes(t), false, 'a token reached a log line');
  }

  void it('S1 agent A sends 3 + 3 across two instances with limit 5 → the 6th gets 429; agent B unaffected', async () => {
    const a = token('agent-a');
    const b = token('agent-b');
    const statuses: number[] = [];
    for (const app of [open, open, open, closed, closed]) statuses.push((await get(app, a)).status);
    const sixth = await get(closed, a);
    statuses.push(sixth.status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
    assert.ok(Number(sixth.headers['retry-after']) >= 1, `Retry-After ${String(sixth.headers['retry-after'])}`);
    assert.equal(sixth.headers['www-authenticate'], undefined, 'a rate limit is not an authentication challenge');
    assert.deepEqual(sixth.json, { error: 'rate_limited', error_description: 'Too many requests, retry later' });
    assert.equal((await get(open, a)).status, 429, 'the other instance counts the same agent');
    assert.equal((await get(open, b)).status, 200, 'agent B unaffected');
    assert.equal((await get(closed, b)).status, 200, 'agent B unaffected on the other instance');
    assertNoLeak(a, b);
  });

  void it('S2 Redis stops → authentication and answers go on, never a 500; limits fail open or closed as configured, logged', async () => {
    await redis.stop();
    const c = token('agent-c');
    const started = performance.now();
    const [viaOpen, viaClosed] = await Promise.all([get(open, c), get(closed, c)]);
    assert.equal(viaOpen.status, 200, 'fail open: the request is served');
    assert.equal(viaClosed.status, 429, 'fail closed: 429, not 500');
    assert.ok(Number(viaClosed.headers['retry-after']) >= 1);
    assert.ok(performance.now() - started < 5_000, 'no request waits on the reconnecting client');
    // Authentication does not depend on Redis: a bad token is still refused with its challenge.
    // Refusals are counted too (M19), so the fail-closed instance answers them 429, never 500.
    const bad = await get(open, 'not-a-token');
    assert.equal(bad.status, 401);
    assert.equal(parseChallenge(bad.headers['www-authenticate'])?.params.error, 'invalid_token');
    const badClosed = await get(closed, 'not-a-token');
    assert.equal(badClosed.status, 429, 'fail closed counts refusals too (M19): 429, not 500');
    assert.equal(badClosed.headers['www-authenticate'], undefined);
    for (let i = 0; i < LIMIT + 2; i++) assert.equal((await get(open, c)).status, 200, 'fail open: unlimited while Redis is gone');
    const warnings = (app: RunningApp) => app.logger.lines.filter((l) => l.startsWith('Throttler storage unavailable'));
    assert.equal(warnings(open).length, 1, 'the outage is logged once');
    assert.match(warnings(open)[0], /fail open/);
    assert.equal(warnings(closed).length, 1);
    assert.match(warnings(closed)[0], /fail closed/);
    assert.equal(logs().some((l) => /\b500\b/.test(l)), false);
    assertNoLeak(c);
  });
});
