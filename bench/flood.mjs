// Unknown-kid flood (part of npm run bench:micro): 10 000 requests with random kids against a
// nestjs-keycard server while legitimate traffic runs; reports JWKS fetches and the p99 latency of
// the legitimate requests with and without the flood.
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import os from 'node:os';
import autocannon from 'autocannon';
import { TestZone, signJws } from '../dist/testing/index.js';

const AUDIENCE = 'https://api.example.com';
const FLOOD = 10_000;
const zone = await TestZone.start({ audience: AUDIENCE });
const valid = zone.issueToken({ scope: 'read', exp: Math.floor(Date.now() / 1000) + 3600 });
const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const now = Math.floor(Date.now() / 1000);
const flood = Array.from({ length: FLOOD }, (_, i) =>
  signJws({ alg: 'ES256', typ: 'at+jwt', kid: `random-${i}-${Math.random().toString(36).slice(2)}` }, { iss: zone.issuer, aud: AUDIENCE, sub: 'x', client_id: 'x', jti: String(i), iat: now, exp: now + 300 }, attacker, 'ES256'),
);

const pinned = os.cpus().length > 1;
const args = ['bench/server.mjs', 'keycard', zone.issuer, AUDIENCE];
const child = spawn(pinned ? 'taskset' : process.execPath, pinned ? ['-c', '0', process.execPath, ...args] : args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const port = await new Promise((resolve) => child.once('message', (m) => resolve(m.port)));
const url = `http://127.0.0.1:${port}/api/data`;
const legit = (duration) => autocannon({ url, connections: 20, duration, headers: { authorization: `Bearer ${valid}` } });

await legit(2); // warm-up: metadata and keys fetched
const quiet = await legit(8);
const jwksBefore = zone.counts.jwks;
let i = 0;
const [noisy, attack] = await Promise.all([
  legit(8),
  autocannon({ url, connections: 10, amount: FLOOD, requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${flood[i++ % FLOOD]}` } }) }] }),
]);
const fetches = zone.counts.jwks - jwksBefore;
child.send('exit');
await new Promise((r) => child.once('exit', r));
await zone.stop();

console.log(`unknown-kid flood: ${attack.requests.total} requests (${attack['2xx']} 2xx, ${attack.non2xx} refused), JWKS fetches during the flood: ${fetches} (target ≤ 1 per 30 s cooldown)`);
console.log(`legitimate p99: ${quiet.latency.p99} ms without the flood, ${noisy.latency.p99} ms with it (target ≤ 2×); ${quiet.requests.average.toFixed(0)} → ${noisy.requests.average.toFixed(0)} req/s`);
console.log(JSON.stringify({ floodRequests: attack.requests.total, jwksFetches: fetches, p99Quiet: quiet.latency.p99, p99Flood: noisy.latency.p99 }));
