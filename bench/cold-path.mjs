// npm run bench:cold: the guard's cold path (every token new to it) against the floor of any
// correct verifier, and its steps one by one, in one process, paired (issue 24).
//  - the floor: split + base64url + JSON + crypto.verify with a cached KeyObject + iss/aud/exp
//  - the guard, verified-token cache off, and on with a cache of half the tokens walked in order
//    (every call a miss; as each token comes back only after it was forgotten, a first sight: no insertion)
//  - with COLD_BEFORE_DIST=/abs/path/to/an/older/dist: the same two guards built from that dist,
//    in the same blocks (an A/B of two builds on a machine whose load changes by the second)
//  - the steps of the cold path alone, each ÷ the same floor: the header (decoded and checked; a
//    header text a verified token carried before, only checked), the payload decoded and parsed,
//    the claim rules and the frozen agent, the signature alone
// Blocks of COLD_BLOCK calls of each variant in turn (the order reversed every other block), timed
// in this process's CPU time (process.cpuUsage: time spent waiting for a core counts in neither),
// COLD_BLOCKS blocks; per variant the median µs per call and the median of its block ÷ the floor's
// block of the same turn, with the quartiles of that ratio (how much the machine moved it).
import 'reflect-metadata';
import { createPublicKey, verify } from 'node:crypto';
import { loadavg } from 'node:os';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TestZone } from '../dist/testing/index.js';
import { checkHeader, toAgentContext } from '../dist/resource-server/access-token-rules.js';
import { decodeJws, parsePayload } from '../dist/resource-server/compact-jws.js';
import { SignedHeaders } from '../dist/resource-server/signed-headers.js';

const R = 'https://api.example.com';
const N = 2000;
const BLOCKS = Number(process.env.COLD_BLOCKS ?? 400);
const BLOCK = Number(process.env.COLD_BLOCK ?? 50);
const cpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const zone = await TestZone.start({ audience: 'https://agent.example.com', resources: { [R]: ['read'] } });
const exp = Math.floor(Date.now() / 1000) + 3600;
const tokens = Array.from({ length: N }, (_, i) => zone.issueToken({ aud: R, scope: 'read', sub: `u${i}`, exp }));
const key = createPublicKey(zone.key('rs1').publicKey.export({ format: 'pem', type: 'spki' }));
const floor = (token) => {
  const [h, p, s] = token.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  if (header.alg !== 'RS256') throw new Error('alg');
  if (!verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) throw new Error('sig');
  if (payload.iss !== zone.issuer || payload.aud !== R || payload.exp < Date.now() / 1000) throw new Error('claims');
};

const refuse = () => {
  throw new Error('the guard refused');
};
const refusedResponse = { set: refuse, setHeader: refuse, header: refuse };
/** A guard built from `dist` with a verified-token cache of `cacheSize`, checked to admit; its app and a check of one token. */
async function guardFrom(dist, cacheSize) {
  const { KeycardGuard, KeycardModule, RequireScopes } = await import(`${dist}/index.js`);
  class Controller_ { list() {} }
  RequireScopes('read')(Controller_.prototype, 'list', Object.getOwnPropertyDescriptor(Controller_.prototype, 'list'));
  class M {}
  // A provider of the app, so the guard knows its handler's rules (it refuses a handler it did not see at bootstrap).
  Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, verifiedTokenCacheSize: cacheSize, logger: { log() {}, warn() {}, error() {} } })], providers: [Controller_] })(M);
  const app = await NestFactory.create(M, { logger: false });
  await app.init();
  const guard = app.get(KeycardGuard);
  const context = (token) => {
    const request = { method: 'GET', url: '/api/data', headers: { host: 'api.example.com', authorization: `Bearer ${token}` }, rawHeaders: ['Host', 'api.example.com', 'Authorization', `Bearer ${token}`], socket: {} };
    return { getType: () => 'http', getHandler: () => Controller_.prototype.list, getClass: () => Controller_, switchToHttp: () => ({ getRequest: () => request, getResponse: () => refusedResponse }) };
  };
  if ((await guard.canActivate(context(tokens[0]))) !== true) throw new Error(`${dist}: the first token was refused`);
  return { app, check: (token) => guard.canActivate(context(token)) };
}

const options = { algorithms: new Set(['RS256', 'PS256', 'ES256']), requireAtJwtType: false, clockToleranceSeconds: 60, readScpClaim: false, dpop: undefined, claimMapping: { agentOf: (claims) => claims.client_id, requireJti: true } };
const kept = new SignedHeaders();
kept.remember(tokens[0].slice(0, tokens[0].indexOf('.')), decodeJws(tokens[0]).header);
const now = Date.now() / 1000;
const expected = { issuer: zone.issuer, audience: R, nowSeconds: now };
const variants = { floor };
const apps = [];
const builds = { '': new URL('../dist', import.meta.url).href };
if (process.env.COLD_BEFORE_DIST) builds['before: '] = new URL(`file://${process.env.COLD_BEFORE_DIST}`).href;
for (const [label, dist] of Object.entries(builds)) {
  const off = await guardFrom(dist, 0);
  const on = await guardFrom(dist, N / 2);
  apps.push(off.app, on.app);
  variants[`${label}guard, cold path (verified-token cache off)`] = off.check;
  variants[`${label}guard, new token (cache on: a miss, a first sight)`] = on.check;
}
Object.assign(variants, {
  'step: header decoded and checked (a new header text)': (token) => checkHeader(decodeJws(token).header, options),
  'step: header checked (its text kept from a verified token)': (token) => checkHeader(decodeJws(token, kept.lookup).header, options),
  'step: payload decoded and parsed': (token) => parsePayload(decodeJws(token, kept.lookup).payload),
  'step: claim rules and the frozen agent (payload parsed)': (token) => toAgentContext(parsePayload(decodeJws(token, kept.lookup).payload), expected, options),
  'step: crypto.verify alone': (token) => {
    const dot = token.lastIndexOf('.');
    if (!verify('sha256', Buffer.from(token.slice(0, dot), 'latin1'), key, Buffer.from(token.slice(dot + 1), 'base64url'))) throw new Error('sig');
  },
});

const names = Object.keys(variants);
const perCall = Object.fromEntries(names.map((name) => [name, []]));
let cursor = 0;
for (let turn = 0; turn <= BLOCKS; turn++) {
  for (const name of turn % 2 ? [...names].reverse() : names) {
    const fn = variants[name];
    const start = cpuMicros();
    for (let i = 0; i < BLOCK; i++) {
      const result = fn(tokens[(cursor + i) % N]);
      if (result instanceof Promise) await result;
    }
    if (turn > 0) perCall[name].push((cpuMicros() - start) / BLOCK); // turn 0 warms up
  }
  cursor = (cursor + BLOCK) % N;
}
const quantile = (list, q) => [...list].sort((a, b) => a - b)[Math.floor(list.length * q)];
const summary = {};
for (const name of names) {
  const ratios = perCall[name].map((t, i) => t / perCall.floor[i]);
  summary[name] = { micros: quantile(perCall[name], 0.5), ratio: quantile(ratios, 0.5) };
  console.log(`${name.padEnd(62)} ${summary[name].micros.toFixed(2).padStart(7)} µs/call  ${summary[name].ratio.toFixed(3)} × floor (quartiles ${quantile(ratios, 0.25).toFixed(3)}–${quantile(ratios, 0.75).toFixed(3)})`);
}
console.log(`${BLOCKS} paired blocks × ${BLOCK} calls, CPU time, Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; target: cold path ≤ 1.15 × floor`);
console.log(JSON.stringify(Object.fromEntries(Object.entries(summary).map(([name, row]) => [name, { micros: +row.micros.toFixed(2), ratio: +row.ratio.toFixed(3) }]))));
for (const app of apps) await app.close();
await zone.stop();
