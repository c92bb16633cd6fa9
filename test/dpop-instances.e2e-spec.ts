/**
 * DPoP across instances (catalogue H14, H18–H22): apps `A` and `B` with the same options, a real
 * `redis-server` holding the replay records, and server nonces sealed under a shared key ring.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { TerminusModule } from '@nestjs/terminus';
import { Redis } from 'ioredis';
import { SHARED_STORE_RECORD_MARGIN_MS } from '../lib/dpop/dpop.validator.js';
import { KeycardHealthIndicator } from '../lib/health/index.js';
import { DpopKey, type KeycardModuleOptions } from '../lib/index.js';
import { RedisDpopReplayStore, type TokenCipherKey } from '../lib/redis/index.js';
import { TestZone } from '../lib/testing/index.js';
import { ALGS, dpopHeaders, expectDpopRefusal } from './support/dpop.js';
import { PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { startApp, type AdapterName, type RunningApp } from './support/keycard-app.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from './support/redis-server.js';

const skipReason = redisUnavailableReason();
const adapter: AdapterName = 'express';

(skipReason ? describe.skip : describe)('DPoP replay records in Redis, instances A and B', () => {
  let zone: TestZone;
  let redis: RunningRedis;
  let admin: Redis;
  const clients: Redis[] = [];
  const apps: RunningApp[] = [];
  const key = DpopKey.generate();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    redis = await startRedis();
    admin = new Redis(redis.port, '127.0.0.1');
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await Promise.all([admin, ...clients].map((client) => (client.status === 'ready' ? client.quit() : client.disconnect())));
    await redis?.close();
    await zone?.stop();
  });

  /** One instance on the Redis at `port`, with the health indicator. */
  async function instance(port: number, dpop: Partial<NonNullable<Exclude<KeycardModuleOptions['dpop'], string>>> = {}) {
    const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    clients.push(client);
    const app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'allowed', replayStore: new RedisDpopReplayStore({ redis: client }), ...dpop } },
      { imports: [TerminusModule.forRoot({ logger: false })], providers: [KeycardHealthIndicator] });
    apps.push(app);
    return app;
  }
  const token = () => zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });

  it('H14 a proof accepted by A is refused on B 1 s later and on A again; Redis holds one hashed key set with NX PX', async () => {
    const [a, b] = [await instance(redis.port), await instance(redis.port)];
    await admin.flushall();
    const jti = `j-${Date.now()}`;
    const t = token();
    const headers = dpopHeaders(key, t, { jti });
    expect((await send(a.url, 'GET', '/orders', headers)).status).toBe(200);
    const keys = await admin.keys('*');
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^keycard:dpop:[A-Za-z0-9_-]{43}$/);
    expect(keys[0].includes(jti)).toBe(false);
    const ttl = await admin.pttl(keys[0]);
    expect(ttl).toBeGreaterThan(0);
    // The window past `iat` (whole seconds, so up to a second of it has gone), a millisecond, and the shared store's margin.
    expect(ttl).toBeLessThanOrEqual(60_000 + 1 + SHARED_STORE_RECORD_MARGIN_MS);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const app of [b, a]) {
      expectDpopRefusal(await send(app.url, 'GET', '/orders', headers), { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [t], logs: app.logger.lines });
    }
    expect(await admin.keys('*')).toHaveLength(1);
  });

  it('H14 at the window\'s last millisecond a replay whose SET reaches Redis a few ms after the original\'s is refused: the record outlives the window as Redis counts it', async () => {
    const a = await instance(redis.port);
    const now = Math.floor(Date.now() / 1000);
    const t = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key, claims: { exp: now + 3600 } });
    const headers = dpopHeaders(key, t, { iat: now });
    // Both checks at |iat − now| = 60 s (still accepted); the replay's SET arrives 20 ms after the
    // original's, as on a loaded machine: a TTL of the window's remaining 1 ms has run out by then.
    a.clock.frozenAtMs = (now + 60) * 1000;
    try {
      expect((await send(a.url, 'GET', '/orders', headers)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expectDpopRefusal(await send(a.url, 'GET', '/orders', headers), { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [t], logs: a.logger.lines });
    } finally {
      a.clock.frozenAtMs = undefined;
    }
  });

  it('H18 Redis down: proofs still verified, replays tracked per instance, one log line, health degraded; with replayStoreUnavailable refuse → 503', async () => {
    const gone = await startRedis();
    const [a, b] = [await instance(gone.port), await instance(gone.port)];
    const strict = await instance(gone.port, { replayStoreUnavailable: 'refuse' });
    const replayStoreOf = async (app: RunningApp) => ((await app.app.get(KeycardHealthIndicator).isHealthy()).keycard as Record<string, unknown>).dpopReplayStore;
    expect((await send(a.url, 'GET', '/orders', dpopHeaders(key, token()))).status).toBe(200);
    expect(await replayStoreOf(a)).toBe('shared');
    await gone.close();
    const t = token();
    const headers = dpopHeaders(key, t);
    expect((await send(a.url, 'GET', '/orders', headers)).status).toBe(200);
    expectDpopRefusal(await send(a.url, 'GET', '/orders', headers), { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [t], logs: a.logger.lines });
    expect((await send(b.url, 'GET', '/orders', headers)).status).toBe(200); // B cannot know: the MCP profile makes jti tracking a MAY
    expect((await send(a.url, 'GET', '/orders', dpopHeaders(key, t))).status).toBe(200);
    expect(a.logger.lines.filter((line) => line.startsWith('DPoP replay store unavailable'))).toHaveLength(1);
    expect(await replayStoreOf(a)).toBe('degraded');
    const refused = await send(strict.url, 'GET', '/orders', dpopHeaders(key, t));
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['www-authenticate']).toBeUndefined();
    expect(refused.text).not.toContain('invalid_token');
    expect(a.logger.lines.concat(strict.logger.lines).join('\n')).not.toContain(t);
  });

  it('H18 Redis back after an outage: a proof remembered on this instance meanwhile is still refused when replayed here (the local record is not forgotten because Redis answers again)', async () => {
    const flaky = await startRedis();
    const a = await instance(flaky.port);
    const replayStoreOf = async () => ((await a.app.get(KeycardHealthIndicator).isHealthy()).keycard as Record<string, unknown>).dpopReplayStore;
    expect((await send(a.url, 'GET', '/orders', dpopHeaders(key, token()))).status).toBe(200);
    await flaky.stop();
    const t = token();
    const headers = dpopHeaders(key, t);
    expect((await send(a.url, 'GET', '/orders', headers)).status).toBe(200);
    expect(await replayStoreOf()).toBe('degraded');
    const back = await startRedis({ port: flaky.port });
    try {
      // Until the client has reconnected and a proof's record went to Redis again.
      for (let i = 0; i < 100 && (await replayStoreOf()) !== 'shared'; i++) {
        await send(a.url, 'GET', '/orders', dpopHeaders(key, token()));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await replayStoreOf()).toBe('shared');
      expectDpopRefusal(await send(a.url, 'GET', '/orders', headers), { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [t], logs: a.logger.lines });
    } finally {
      await back.close();
    }
  });
});

describe('DPoP server nonces across instances (H19–H22)', () => {
  let zone: TestZone;
  let a: RunningApp;
  let b: RunningApp;
  const ring: TokenCipherKey[] = [{ id: 'n1', key: randomBytes(32) }];
  const key = DpopKey.generate();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    const options = { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'allowed' as const, nonce: { keys: ring } } };
    a = await startApp(adapter, options);
    b = await startApp('fastify', options);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await zone?.stop();
  });

  const token = () => zone.tokenFor({ scopes: ['orders:read'], dpopKey: key, claims: { exp: Math.floor(Date.now() / 1000) + 3600 } });
  /** The nonce A hands out for a proof without one. */
  async function nonceFrom(app: RunningApp): Promise<string> {
    const res = await send(app.url, 'GET', '/orders', dpopHeaders(key, token()));
    expect(res.status).toBe(401);
    return res.headers['dpop-nonce'] as string;
  }
  const expectUseNonce = (res: Awaited<ReturnType<typeof send>>, app: RunningApp, secret: string) => {
    expectDpopRefusal(res, { dpopError: 'use_dpop_nonce', prm: PRM, secrets: [secret], logs: app.logger.lines });
    expect(res.headers['dpop-nonce']).toMatch(/^[\x21\x23-\x5B\x5D-\x7E]+$/);
    expect(res.headers['cache-control']).toBe('no-store');
  };

  it('H19 nonces on: a proof without nonce → 401 use_dpop_nonce, DPoP-Nonce, Cache-Control no-store', async () => {
    const t = token();
    const res = await send(a.url, 'GET', '/orders', dpopHeaders(key, t));
    expectUseNonce(res, a, t);
    expect(res.headers['www-authenticate']).toContain(`algs="${ALGS}"`);
  });

  it('H20 A\'s nonce works on B; an expired nonce, a foreign nonce and "x" → use_dpop_nonce with a fresh one', async () => {
    const nonce = await nonceFrom(a);
    const t = token();
    expect((await send(b.url, 'GET', '/orders', dpopHeaders(key, t, { nonce }))).status).toBe(200);
    const foreign = (await import('../lib/dpop/dpop-nonces.js')).DpopNonces;
    const zoneNonce = new foreign({ keys: [{ id: 'as', key: randomBytes(32) }], lifetimeSeconds: 60 }).issue(Date.now());
    for (const bad of [zoneNonce, 'x']) expectUseNonce(await send(b.url, 'GET', '/orders', dpopHeaders(key, t, { nonce: bad })), b, t);
    b.clock.offsetMs = 61_000;
    try {
      const res = await send(b.url, 'GET', '/orders', dpopHeaders(key, t, { nonce, iat: Math.floor((Date.now() + 61_000) / 1000) }));
      expectUseNonce(res, b, t);
      expect(res.headers['dpop-nonce']).not.toBe(nonce);
    } finally {
      b.clock.offsetMs = 0;
    }
  });

  it('H21 after use_dpop_nonce, a proof without nonce and a fresh jti → still use_dpop_nonce', async () => {
    await nonceFrom(a);
    const t = token();
    expectUseNonce(await send(a.url, 'GET', '/orders', dpopHeaders(key, t)), a, t);
  });

  it('H22 a nonce past half its lifetime: the 200 offers a new nonce, no-store; the old one works until it expires', async () => {
    const nonce = await nonceFrom(a);
    const t = token();
    const fresh = await send(a.url, 'GET', '/orders', dpopHeaders(key, t, { nonce }));
    expect(fresh.status).toBe(200);
    expect(fresh.headers['dpop-nonce']).toBeUndefined();
    a.clock.offsetMs = 31_000;
    try {
      const iat = Math.floor((Date.now() + 31_000) / 1000);
      const aging = await send(a.url, 'GET', '/orders', dpopHeaders(key, t, { nonce, iat }));
      expect(aging.status).toBe(200);
      expect(aging.headers['dpop-nonce']).toEqual(expect.any(String));
      expect(aging.headers['dpop-nonce']).not.toBe(nonce);
      expect(aging.headers['cache-control']).toBe('no-store');
      expect((await send(a.url, 'GET', '/orders', dpopHeaders(key, t, { nonce, iat }))).status).toBe(200);
    } finally {
      a.clock.offsetMs = 0;
    }
  });
});
