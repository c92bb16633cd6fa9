/**
 * Keys and records name the issuer (catalogue O14, O15; Q18): a `client_id` or `sub` is unique only
 * at its issuer (RFC 6749 §2.2), so two zones' `agent-x` never share a rate-limit bucket or an
 * audit identity. Node's test runner, not Jest: @nestjs/throttler is CommonJS (see throttler.test.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { Redis } from 'ioredis';
import { TestZone } from '../../lib/testing/index.js';
import { FailSafeThrottlerStorage, KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { send } from '../support/http.js';
import { startApp, type RunningApp } from '../support/keycard-app.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from '../support/redis-server.js';

const R = 'https://api.example.com';

const auditLines = (api: RunningApp) =>
  api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

void describe('O14 per-agent limits with two zones, in Redis', { skip: redisUnavailableReason() }, () => {
  let z1: TestZone;
  let z2: TestZone;
  let redis: RunningRedis;
  let client: Redis;
  let api: RunningApp;

  before(async () => {
    [z1, z2] = await Promise.all([TestZone.start({ audience: R }), TestZone.start({ audience: R })]);
    redis = await startRedis();
    client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    const storage = new FailSafeThrottlerStorage(new ThrottlerStorageRedisService(client), { whenUnavailable: 'closed', timeoutMs: 500 });
    api = await startApp(
      'express',
      { zones: [z1.issuer, z2.issuer], resource: R },
      {
        imports: [ThrottlerModule.forRoot({ throttlers: [{ ttl: 60_000, limit: 3 }], storage })],
        providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
      },
    );
  });
  after(async () => {
    await api?.close();
    client?.disconnect();
    await redis?.close();
    await Promise.all([z1?.stop(), z2?.stop()]);
  });

  void it('O14 3 × Z1 agent-x, 1 × Z2 agent-x, 1 × Z1 agent-x → 200, 200, 200, 200, 429 + Retry-After; the two agents have their own Redis keys; no token in any key or value', async () => {
    const t1 = z1.issueToken({ client_id: 'agent-x', sub: 'user-1', scope: 'orders:read' });
    const t2 = z2.issueToken({ client_id: 'agent-x', sub: 'user-1', scope: 'orders:read' });
    const get = (token: string) => send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
    const answers = [];
    for (const token of [t1, t1, t1, t2, t1]) answers.push(await get(token));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 429]);
    assert.ok(Number(answers[4]!.headers['retry-after']) >= 1, `Retry-After ${String(answers[4]!.headers['retry-after'])}`);
    assert.equal(answers[4]!.headers['www-authenticate'], undefined, 'a rate limit is not an authentication challenge');

    // @nestjs/throttler stores sha256(`<class>-<handler>-<throttler>-<tracker>`); the tracker names the issuer.
    const keys = await client.keys('*');
    const hits = (issuer: string) => `{${createHash('sha256').update(`OrdersController-list-default-agent:${JSON.stringify([issuer, 'agent-x'])}`).digest('hex')}:default}:hits`;
    assert.ok(keys.includes(hits(z1.issuer)), `keys: ${keys.join(', ')}`);
    assert.ok(keys.includes(hits(z2.issuer)), `keys: ${keys.join(', ')}`);
    assert.notEqual(hits(z1.issuer), hits(z2.issuer));
    assert.deepEqual(await Promise.all([client.get(hits(z1.issuer)), client.get(hits(z2.issuer))]).then((v) => v.map(Number)), [4, 1]);
    const values = await Promise.all(keys.map(async (k) => JSON.stringify(await client.dump(k))));
    for (const text of [...keys, ...values, ...api.logger.lines]) {
      for (const token of [t1, t2]) assert.equal(text.includes(token.split('.')[2]!), false, 'a token reached Redis or a log line');
    }
  });
});

void describe('O15 audit records with two zones', () => {
  let z1: TestZone;
  let z2: TestZone;
  let api: RunningApp;

  before(async () => {
    [z1, z2] = await Promise.all([TestZone.start({ audience: R }), TestZone.start({ audience: R })]);
    api = await startApp('fastify', { zones: [z1.issuer, z2.issuer], resource: R, auditLog: true });
  });
  after(async () => {
    await api?.close();
    await Promise.all([z1?.stop(), z2?.stop()]);
  });

  void it('O15 one admitted request from each zone (same user-1, agent-x) → two records with different issuer; a forged token\'s refusal carries no issuer, agent or user', async () => {
    const get = (token: string) => send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
    const t1 = z1.issueToken({ client_id: 'agent-x', sub: 'user-1', scope: 'orders:read' });
    const t2 = z2.issueToken({ client_id: 'agent-x', sub: 'user-1', scope: 'orders:read' });
    const forged = `${t1.slice(0, t1.lastIndexOf('.'))}.${Buffer.from('not the signature').toString('base64url')}`;
    api.logger.lines.length = 0;
    assert.deepEqual([(await get(t1)).status, (await get(t2)).status, (await get(forged)).status], [200, 200, 401]);
    const [a, b, refused] = auditLines(api);
    assert.deepEqual([a!.issuer, a!.agent, a!.user, a!.status], [z1.issuer, 'agent-x', 'user-1', 200]);
    assert.deepEqual([b!.issuer, b!.agent, b!.user, b!.status], [z2.issuer, 'agent-x', 'user-1', 200]);
    assert.notEqual(a!.issuer, b!.issuer);
    assert.deepEqual([refused!.status, refused!.issuer, refused!.agent, refused!.user, refused!.tokenId], [401, undefined, undefined, undefined, undefined]);
    for (const line of api.logger.lines) for (const token of [t1, t2, forged]) assert.equal(line.includes(token.split('.')[2]!), false);
  });
});
