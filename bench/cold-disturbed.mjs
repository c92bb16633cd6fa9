// npm run bench:cold:disturbed: the guard's cold path against the hand-written ideal guard, in one
// process, with the CPU's caches disturbed before every call as a server disturbs them (issue 24).
//
// Why: in a server the guard's work beyond the ideal guard's reads about 13 µs a request, in
// `npm run bench:cold` under 1 µs. Between two requests a server runs Express, Nest's router,
// Node's HTTP code and the load generator's sockets, which push the guard's code and data out of
// the CPU's caches; an in-process loop calling the guard back to back keeps them warm. Here each
// call is preceded by a walk over COLD_DISTURB_MB of memory, one read per 64-byte line (default
// 16: at that size the ideal guard's call costs in-process what it adds to a server's request on
// this project's VM, whose cache sizes the guest cannot read), and a pass through unrelated
// library code (util.inspect, URL parsing); and each call gets what a server hands it: a Node
// request with Express 5's per-request prototype (its `user` field seeded, as the module does for
// Express), in Nest's own ExecutionContextHost. COLD_DISTURB_MB=0: the same calls, caches warm.
//
// The guards see the same tokens, call by call (the order rotated every call), each
// timed alone with performance.now() (the disturbance is not timed). Tokens are a pool of 4 000
// RS256 tokens and the guard's verified-token cache holds 1 000, so every call is a miss and a
// first sight, as with per-action tokens. COLD_BEFORE_DIST=/abs/path/to/an/older/dist adds that
// build's guard to the same calls (an A/B of two builds). COLD_LAYERS=1 adds two reference guards
// (bench/layer-guards.mjs): the module's rules in one function, and its TokenVerifier under a
// minimal guard, to split the gap between the rules, the verification stack and the decision core. The report: per guard, the median µs a
// call over blocks of 50, and the paired median of (guard − ideal) over the blocks with its
// quartiles. COLD_CALLS calls per guard (default 20 000, the first 200 a warm-up; about a minute
// and a half at the default 16 MB on this project's VM). Read the differences, not the µs — and on
// a quiet machine only: other load on the cores disturbs the caches further and widens the gap
// itself (a run at load 2.3 read +54.7 µs over 76 blocks where a quiet one reads +14…+16 over 396).
import 'reflect-metadata';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { loadavg } from 'node:os';
import { inspect } from 'node:util';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { ExpressAdapter } from '@nestjs/platform-express';
import { TestZone } from '../dist/testing/index.js';
import { layerGuards } from './layer-guards.mjs';
import { idealGuard, zoneKeys } from './peer-guards.mjs';

const RESOURCE = 'https://api.example.com';
const POOL = 4000;
const CALLS = Number(process.env.COLD_CALLS ?? 20_000);
const BLOCK = 50;
const WARM_BLOCKS = 4;
const DISTURB_MB = Number(process.env.COLD_DISTURB_MB ?? 16);

const zone = await TestZone.start({ audience: 'https://agent.example.com', resources: { [RESOURCE]: ['read'] } });
const exp = Math.floor(Date.now() / 1000) + 3600;
const tokens = Array.from({ length: POOL }, (_, i) => zone.issueToken({ aud: RESOURCE, scope: 'read', sub: `u${i}`, exp }));

class Route { list() {} }
const handler = Route.prototype.list;
/** The Express 5 app under Nest's adapter (express itself is its dependency, not this project's). */
const expressApp = new ExpressAdapter().getInstance();
const socket = new Socket();
const response = { set() {}, setHeader() {}, header() {}, status() { return this; } };

/** A GET /api/data as Express 5 hands it over: a Node request given the app's prototype, its `user` seeded. */
function contextFor(token, seeded) {
  const request = new IncomingMessage(socket);
  request.method = 'GET';
  request.url = '/api/data';
  request.headers = { host: 'api.example.com', authorization: `Bearer ${token}`, 'user-agent': 'autocannon', accept: '*/*' };
  request.rawHeaders = ['Host', 'api.example.com', 'Authorization', `Bearer ${token}`, 'User-Agent', 'autocannon', 'Accept', '*/*'];
  for (const key of seeded) request[key] = undefined;
  Object.setPrototypeOf(request, expressApp.request);
  Object.assign(request, { res: response, baseUrl: '', originalUrl: '/api/data', params: {}, route: {} });
  const context = new ExecutionContextHost([request, response, () => {}], Route, handler);
  context.setType('http');
  return context;
}

/** The keycard guard of the build in `dist`, its app made as an app's would be, checked to admit. */
async function keycardGuardFrom(dist) {
  const { KeycardGuard, KeycardModule, RequireScopes } = await import(`${dist}/index.js`);
  const { VERIFYING } = await import(`${dist}/decision/shared-verification.js`).catch(() => ({}));
  RequireScopes('read')(Route.prototype, 'list', Object.getOwnPropertyDescriptor(Route.prototype, 'list'));
  class BenchModule {}
  Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: RESOURCE, verifiedTokenCacheSize: POOL / 4, logger: { log() {}, warn() {}, error() {} } })], providers: [Route] })(BenchModule);
  const app = await NestFactory.create(BenchModule, { logger: false });
  await app.init();
  const guard = app.get(KeycardGuard);
  // What HttpRequestShape gives every Express request before Express sees it.
  const seeded = VERIFYING === undefined ? ['user'] : ['user', VERIFYING];
  if ((await guard.canActivate(contextFor(tokens[0], seeded))) !== true) throw new Error(`${dist}: the first token was refused`);
  return { app, guard, seeded };
}

const guards = { ideal: { guard: new (idealGuard({ keys: await zoneKeys(zone.issuer), issuer: zone.issuer, audience: RESOURCE, scope: 'read' }))(), seeded: ['user'] } };
guards.keycard = await keycardGuardFrom(new URL('../dist', import.meta.url).href);
if (process.env.COLD_BEFORE_DIST) guards['keycard (before)'] = await keycardGuardFrom(new URL(`file://${process.env.COLD_BEFORE_DIST}`).href);
if (process.env.COLD_LAYERS === '1') {
  const dist = new URL('../dist', import.meta.url).href;
  // The verifier's own app: its verified-token cache must not see the keycard guard's tokens first.
  const { app: verifierApp } = await keycardGuardFrom(dist);
  const reference = await layerGuards({ dist, app: guards.keycard.app, verifierApp, keys: await zoneKeys(zone.issuer), issuer: zone.issuer, audience: RESOURCE, scope: 'read' });
  guards.rules = { guard: reference.rules, seeded: ['user'] };
  guards.verifier = { guard: reference.verifier, seeded: ['user'], app: verifierApp };
}

const memory = new Float64Array((DISTURB_MB * 1024 * 1024) / 8);
const unrelated = { list: [1, 'x', { map: new Map([[1, 2]]) }], date: new Date(0), pattern: /re/g, bytes: Buffer.alloc(4) };
let sink = 0;
/** What a server does between two guard calls, roughly: other data and other code through the caches. */
function disturb() {
  for (let i = 0; i < memory.length; i += 8) sink += memory[i]++;
  sink += inspect(unrelated, { depth: 4 }).length + new URL('https://h.example/p?q=1#f').search.length;
}

const names = Object.keys(guards);
const perBlock = Object.fromEntries(names.map((name) => [name, []]));
for (let block = 0, call = 0; call < CALLS; block++) {
  const sums = Object.fromEntries(names.map((name) => [name, 0]));
  for (let i = 0; i < BLOCK; i++, call++) {
    const token = tokens[call % POOL];
    // Each guard takes each place in turn, so none always follows the same one.
    for (let turn = 0; turn < names.length; turn++) {
      const name = names[(call + turn) % names.length];
      const { guard, seeded } = guards[name];
      const context = contextFor(token, seeded);
      if (DISTURB_MB > 0) disturb();
      const start = performance.now();
      const admitted = guard.canActivate(context);
      sums[name] += performance.now() - start;
      if (admitted !== true) throw new Error(`${name} did not admit synchronously`);
    }
  }
  if (block >= WARM_BLOCKS) for (const name of names) perBlock[name].push((sums[name] * 1000) / BLOCK);
}

const quantile = (list, q) => [...list].sort((a, b) => a - b)[Math.floor(list.length * q)];
console.log(`${DISTURB_MB > 0 ? `caches disturbed before every call (${DISTURB_MB} MB walked, unrelated code run)` : 'caches warm (no disturbance)'}; ${perBlock.ideal.length} blocks of ${BLOCK} calls per guard, Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
for (const name of names) {
  const gaps = perBlock[name].map((micros, i) => micros - perBlock.ideal[i]);
  const gap = name === 'ideal' ? '' : `  − ideal ${quantile(gaps, 0.5).toFixed(2).padStart(6)} µs (quartiles ${quantile(gaps, 0.25).toFixed(2)}…${quantile(gaps, 0.75).toFixed(2)})`;
  console.log(`${name.padEnd(18)} ${quantile(perBlock[name], 0.5).toFixed(2).padStart(7)} µs/call${gap}`);
}
if (sink === -1) console.log('');
for (const { app } of Object.values(guards)) await app?.close();
await zone.stop();
