// The guard's cache hit, this build against an older one, in one process (CPU time, paired blocks):
// what `npm run bench`'s server rows cannot resolve below their noise (±0.05 of baseline there).
// `HIT_BEFORE_DIST=/abs/path/in/this/tree/dist node bench/cache-hit-ab.mjs` after `npm run build`.
// Each build gets the same app: KeycardModule.forRoot, a route with plain @RequireScopes('read'),
// 2 000 tokens each verified twice first (a token is kept from its second verification on).
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

const R = 'https://api.example.com';
const TOKENS = 2000;
const BLOCKS = Number(process.env.HIT_BLOCKS ?? 400);
const BLOCK = 20;
const cpu = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const before = process.env.HIT_BEFORE_DIST;
if (!before) throw new Error('HIT_BEFORE_DIST=/abs/path/to/an/older/dist is required');
const { TestZone } = await import('../dist/testing/index.js');
const zone = await TestZone.start({ audience: 'https://agent.example.com', resources: { [R]: ['read'] } });
const exp = Math.floor(Date.now() / 1000) + 3600;
const tokens = Array.from({ length: TOKENS }, (_, i) => zone.issueToken({ aud: R, scope: 'read', sub: `u${i}`, client_id: `agent-${i % 100}`, exp }));

/** The guard of an app of `dist`, every token verified twice. */
async function guardOf(dist) {
  const { KeycardGuard, KeycardModule, RequireScopes } = await import(`${dist}/index.js`);
  class Controller_ { list() {} }
  RequireScopes('read')(Controller_.prototype, 'list', Object.getOwnPropertyDescriptor(Controller_.prototype, 'list'));
  class M {}
  Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, verifiedTokenCacheSize: 2 * TOKENS, logger: { log() {}, warn() {}, error() {} } })], providers: [Controller_] })(M);
  const app = await NestFactory.create(M, { logger: false });
  await app.init();
  const guard = app.get(KeycardGuard);
  const check = (token) => {
    const request = { method: 'GET', url: '/api/data', headers: { host: 'api.example.com', authorization: `Bearer ${token}` }, rawHeaders: ['Host', 'api.example.com', 'Authorization', `Bearer ${token}`], socket: {} };
    return guard.canActivate({ getType: () => 'http', getHandler: () => Controller_.prototype.list, getClass: () => Controller_, getArgs: () => [request, {}], switchToHttp: () => ({ getRequest: () => request, getResponse: () => ({}) }) });
  };
  for (let pass = 0; pass < 2; pass++) for (const token of tokens) if ((await check(token)) !== true) throw new Error(`${dist}: not admitted`);
  return { app, check };
}

const builds = { before: await guardOf(before), now: await guardOf('../dist') };
const perCall = { before: [], now: [] };
let cursor = 0;
for (let turn = 0; turn <= BLOCKS; turn++) {
  for (const name of turn % 2 ? ['now', 'before'] : ['before', 'now']) {
    const start = cpu();
    for (let i = 0; i < BLOCK; i++) await builds[name].check(tokens[(cursor + i) % TOKENS]);
    if (turn > 0) perCall[name].push((cpu() - start) / BLOCK);
  }
  cursor = (cursor + BLOCK) % TOKENS;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const diff = median(perCall.now.map((t, i) => t - perCall.before[i]));
console.log(`guard cache hit, before: ${median(perCall.before).toFixed(2)} µs; now: ${median(perCall.now).toFixed(2)} µs; now − before, paired: ${diff >= 0 ? '+' : ''}${diff.toFixed(2)} µs (median of ${BLOCKS} blocks × ${BLOCK}, CPU time)`);
for (const { app } of Object.values(builds)) await app.close();
await zone.stop?.();
process.exit(0);
