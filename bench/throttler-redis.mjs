// Added latency of shared per-agent limits (issue: scale; not a test): the same Keycard-protected
// route behind KeycardThrottlerGuard with @nestjs/throttler's in-memory storage and with the Redis
// storage (@nest-lab/throttler-storage-redis behind FailSafeThrottlerStorage), one redis-server on
// loopback started here. Sequential keep-alive requests, the two apps interleaved so both see the
// same machine noise; p50/p99 per variant and of the storage call alone.
// Runs against the built package (npm run build). REQUESTS=… sets the requests per variant.
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { Controller, Get, Module } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { ThrottlerModule, ThrottlerStorageService } from '@nestjs/throttler';
import { Redis } from 'ioredis';
import { KeycardModule, RequireScopes } from '../dist/index.js';
import { TestZone } from '../dist/testing/index.js';
import { FailSafeThrottlerStorage, KeycardThrottlerGuard } from '../dist/throttler/index.js';

const R = 'https://api.example.com';
const REQUESTS = Number(process.env.REQUESTS ?? 2_000);
const WARMUP = Math.min(500, REQUESTS);

const port = await new Promise((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port: p } = server.address();
    server.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'keycard-bench-redis-'));
const redisServer = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
for (let i = 0; ; i++) {
  const up = await new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
  if (up) break;
  if (i > 400) throw new Error('redis-server did not start');
  await new Promise((r) => setTimeout(r, 25));
}

const zone = await TestZone.start({ audience: R });
const redis = new Redis(port, '127.0.0.1');

class DataController {
  data() {
    return { ok: true };
  }
}
const method = Object.getOwnPropertyDescriptor(DataController.prototype, 'data');
Get('data')(DataController.prototype, 'data', method);
RequireScopes('read')(DataController.prototype, 'data', method);
Controller()(DataController);

async function app(storage) {
  class AppModule {}
  Module({
    imports: [
      KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R }),
      ThrottlerModule.forRoot({ throttlers: [{ ttl: 60_000, limit: 1e9 }], storage }),
    ],
    controllers: [DataController],
    providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
  })(AppModule);
  const nest = await NestFactory.create(AppModule, { logger: false });
  await nest.listen(0, '127.0.0.1');
  return { nest, port: nest.getHttpServer().address().port };
}

const memoryStorage = new ThrottlerStorageService();
const redisStorage = new FailSafeThrottlerStorage(new ThrottlerStorageRedisService(redis), { whenUnavailable: 'open' });
const variants = [
  { name: 'in-memory storage', ...(await app(memoryStorage)), storage: memoryStorage, samples: [], storageSamples: [] },
  { name: 'Redis storage', ...(await app(redisStorage)), storage: redisStorage, samples: [], storageSamples: [] },
];
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const headers = { authorization: `Bearer ${zone.issueToken({ scope: 'read', client_id: 'bench-agent' })}` };

function get(port) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/data', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

for (let i = 0; i < WARMUP + REQUESTS; i++) {
  for (const variant of variants) {
    let start = process.hrtime.bigint();
    await get(variant.port);
    if (i >= WARMUP) variant.samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    start = process.hrtime.bigint();
    await variant.storage.increment('bench-key', 60_000, 1e9, 60_000, 'default');
    if (i >= WARMUP) variant.storageSamples.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
}

const pct = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
};
const rows = variants.map((v) => ({
  variant: v.name,
  'request p50 ms': pct(v.samples, 0.5).toFixed(3),
  'request p99 ms': pct(v.samples, 0.99).toFixed(3),
  'storage call p50 µs': pct(v.storageSamples, 0.5).toFixed(1),
  'storage call p99 µs': pct(v.storageSamples, 0.99).toFixed(1),
}));
console.table(rows);
const [memory, shared] = variants;
console.log(
  `added by one Redis round trip per request: p50 +${(pct(shared.samples, 0.5) - pct(memory.samples, 0.5)).toFixed(3)} ms, ` +
    `p99 +${(pct(shared.samples, 0.99) - pct(memory.samples, 0.99)).toFixed(3)} ms over ${REQUESTS} sequential requests per variant (Node ${process.version})`,
);

agent.destroy();
for (const v of variants) await v.nest.close();
await redis.quit();
await zone.stop();
redisServer.kill('SIGTERM');
await new Promise((r) => redisServer.once('exit', r));
rmSync(dir, { recursive: true, force: true });
