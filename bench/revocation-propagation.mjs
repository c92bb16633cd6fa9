// npm run bench:revocation: how long a revocation taken on instance A takes to reach instance B
// through a real redis-server (catalogue X23, decision Q35: D = 1 s at p99). Two Nest apps with
// their own ioredis clients share one redis-server started here on a free loopback port; A revokes
// a session, and the delay is taken when B's list holds the entry (B refuses from that moment; each
// sample also checks that B answers 401 after). Both apps run in this process, so they share one
// clock and one event loop; the figure includes Redis round trips, pub/sub and B's JSON parsing.
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { KeycardModule, KeycardRevocationModule, RequireScopes, RevocationService } from '../dist/index.js';
import { RedisRevocationFeed } from '../dist/redis/index.js';
import { TestZone } from '../dist/testing/index.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 500);
const AUDIENCE = 'https://api.example.com';

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'keycard-bench-redis-'));
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => (child.kill('SIGTERM'), rmSync(dir, { recursive: true, force: true })) };
}

class Orders {
  list() {
    return { ok: true };
  }
}
Get('orders')(Orders.prototype, 'list', Object.getOwnPropertyDescriptor(Orders.prototype, 'list'));
RequireScopes('read')(Orders.prototype, 'list', Object.getOwnPropertyDescriptor(Orders.prototype, 'list'));
Controller()(Orders);

async function instance(zone, redisUrl) {
  const redis = new Redis(redisUrl);
  class AppModule {}
  Module({
    imports: [
      KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: AUDIENCE, logger: { log() {}, warn() {}, error() {} } }),
      KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: 3600, feed: new RedisRevocationFeed({ redis }) }),
    ],
    controllers: [Orders],
  })(AppModule);
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  return { app, redis, url: await app.getUrl(), revocations: app.get(RevocationService) };
}

const zone = await TestZone.start({ audience: AUDIENCE });
const redis = await startRedis();
const a = await instance(zone, redis.url);
const b = await instance(zone, redis.url);

const delays = [];
for (let i = 0; i < SAMPLES; i++) {
  const sessionId = `bench-${i}`;
  const token = zone.issueToken({ scope: 'read', sid: sessionId });
  const arrived = new Promise((resolve) => {
    const stop = b.revocations.onApplied((entry) => {
      if (entry.value !== sessionId) return;
      stop();
      resolve(performance.now());
    });
  });
  const start = performance.now();
  await a.revocations.revoke({ issuer: zone.issuer, sessionId });
  delays.push((await arrived) - start);
  const status = (await fetch(`${b.url}/orders`, { headers: { authorization: `Bearer ${token}` } })).status;
  if (status !== 401) throw new Error(`B served a revoked session (status ${status})`);
}

const sorted = [...delays].sort((x, y) => x - y);
const at = (q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
console.log(`revocation propagation A → Redis → B, ${SAMPLES} samples (ms): p50 ${at(0.5).toFixed(2)}  p99 ${at(0.99).toFixed(2)}  max ${sorted.at(-1).toFixed(2)}`);
console.log(`bound D = 1000 ms at p99 (catalogue Q35): ${at(0.99) < 1000 ? 'met' : 'NOT met'}`);
await a.app.close();
await b.app.close();
a.redis.disconnect();
b.redis.disconnect();
redis.stop();
await zone.stop();
