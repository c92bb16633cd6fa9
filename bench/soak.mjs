// Soak test (not part of npm test): sustained load against the sample API with a mix of valid,
// invalid, unknown-kid and expired tokens. Fails on any unexpected status or unbounded heap growth.
//   npm run soak                     (3 minutes)
//   SOAK_SECONDS=30 npm run soak     (shorter)
import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../dist-sample/sample/app.module.js';
import { TestZone, signJws } from '../dist-sample/lib/testing/index.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 180);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 32);
const MAX_HEAP_GROWTH_MB = 64;

const zone = await TestZone.start();
const app = await NestFactory.create(AppModule.register({ zoneUrl: zone.issuer, resource: 'http://localhost', rateLimit: 1e9, rateWindowMs: 60_000, logger: { log() {}, warn() {}, error: (m) => console.error(m) } }), { logger: ['error'] });
await app.listen(0, '127.0.0.1');
const port = app.getHttpServer().address().port;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const now = () => Math.floor(Date.now() / 1000);

// 1 000 distinct valid tokens (a cold-ish path), re-issued as they near expiry.
let valid = [];
const refillValid = () => {
  valid = Array.from({ length: 1000 }, (_, i) => zone.issueToken({ aud: 'http://localhost', client_id: `agent-${i % 50}`, sub: `user-${i}`, scope: 'read', exp: now() + 600 }));
};
refillValid();
const refill = setInterval(refillValid, 240_000);
const kinds = {
  valid: { expect: 200, token: (i) => valid[i % valid.length] },
  tampered: { expect: 401, token: (i) => valid[i % valid.length].slice(0, -6) + 'AAAAAA' },
  garbage: { expect: 401, token: (i) => `not.a.token${i}` },
  unknownKid: { expect: 401, token: (i) => signJws({ alg: 'RS256', typ: 'at+jwt', kid: `rnd-${i}` }, { iss: zone.issuer, aud: 'http://localhost', sub: 'x', client_id: 'x', jti: `${i}`, iat: now(), exp: now() + 60 }, attacker, 'RS256') },
  expired: { expect: 401, token: (i) => zone.issueToken({ aud: 'http://localhost', client_id: 'late', sub: `u${i}`, scope: 'read', iat: now() - 7200, exp: now() - 3600 }) },
};
const names = Object.keys(kinds);
const stats = Object.fromEntries(names.map((n) => [n, { sent: 0, statuses: {} }]));
let unexpected = 0;

function request(token) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/api/data', agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.setTimeout(10_000, () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

const heap = () => {
  global.gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
};
// Warm-up, then measure the heap baseline.
for (let i = 0; i < 2000; i++) await request(kinds.valid.token(i));
const heapBefore = heap();
const deadline = Date.now() + SECONDS * 1000;
let counter = 0;
async function worker() {
  while (Date.now() < deadline) {
    const i = counter++;
    const name = names[i % 10 < 6 ? 0 : 1 + (i % 4)]; // 60 % valid, 40 % the four bad kinds
    const status = await request(kinds[name].token(i));
    const s = stats[name];
    s.sent += 1;
    s.statuses[status] = (s.statuses[status] ?? 0) + 1;
    if (status !== kinds[name].expect) unexpected += 1;
  }
}
const started = Date.now();
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
const elapsed = (Date.now() - started) / 1000;
const heapAfter = heap();
clearInterval(refill);
agent.destroy();
await app.close();
await zone.stop();

const total = names.reduce((sum, n) => sum + stats[n].sent, 0);
console.log(`soak: ${total} requests in ${elapsed.toFixed(0)} s (${(total / elapsed).toFixed(0)} req/s, ${CONCURRENCY} connections, Node ${process.version})`);
for (const n of names) console.log(`  ${n.padEnd(10)} sent ${String(stats[n].sent).padStart(7)}  statuses ${JSON.stringify(stats[n].statuses)}  expected ${kinds[n].expect}`);
console.log(`  JWKS fetches: ${zone.counts.jwks}, metadata fetches: ${zone.counts.metadata}`);
console.log(`  heap used: ${heapBefore.toFixed(1)} MB before, ${heapAfter.toFixed(1)} MB after${global.gc ? ' (after gc)' : ' (run with --expose-gc for exact figures)'}`);
console.log(`soak: ${total - unexpected} passed, ${unexpected} failed`);
if (unexpected > 0 || heapAfter - heapBefore > MAX_HEAP_GROWTH_MB) process.exitCode = 1;
