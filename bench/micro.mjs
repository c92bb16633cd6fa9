// npm run bench:micro: per-token costs without HTTP, against the built package.
//  - floor: split + base64url + JSON + crypto.verify with a cached KeyObject + iss/aud/exp checks
//  - the guard's cold path (every token new to it) and its verified-token cache hit
//  - the cache hit with the decision core's optional steps on: one DecisionEvents subscriber and one
//    TokenValidator (what an app that observes decisions, or the audit log, adds per call)
//  - the cache hit with policies: a requirement that is a function of the arguments, a scope hierarchy
//  - a cache-hit TokenExchangeService.exchange()
import 'reflect-metadata';
import { createPublicKey, verify } from 'node:crypto';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { DecisionEvents, KEYCARD_TOKEN_VALIDATORS, KeycardGuard, KeycardModule, RequireScopes, TokenExchangeService } from '../dist/index.js';
import { TestZone } from '../dist/testing/index.js';

const R = 'https://api.example.com';
const N = Number(process.env.MICRO_TOKENS ?? 2000);
const ROUNDS = Number(process.env.MICRO_ROUNDS ?? 5);
const zone = await TestZone.start({ audience: 'https://agent.example.com', resources: { [R]: ['read'] }, clients: [{ clientId: 'agent', clientSecret: 'micro-secret' }] });
const exp = Math.floor(Date.now() / 1000) + 3600;
const tokens = Array.from({ length: N }, (_, i) => zone.issueToken({ aud: R, scope: 'read', sub: `u${i}`, exp }));

function stats(samples) {
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length / 2)], p99: samples[Math.floor(samples.length * 0.99)] };
}
async function time(label, fn, perRound = N) {
  const perCall = [];
  for (let round = 0; round < ROUNDS + 1; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) await fn(i);
    if (round > 0) perCall.push(Number(process.hrtime.bigint() - start) / 1000 / perRound); // round 0 warms up
  }
  const { p50 } = stats(perCall);
  console.log(`${label.padEnd(58)} ${p50.toFixed(2).padStart(8)} µs/call (median of ${ROUNDS} rounds × ${perRound})`);
  return p50;
}

// The floor: what any correct verifier must at least do.
const key = createPublicKey(zone.key('rs1').publicKey.export({ format: 'pem', type: 'spki' }));
const floor = await time('floor: parse + crypto.verify (cached KeyObject) + iss/aud/exp', (i) => {
  const token = tokens[i];
  const [h, p, s] = token.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  if (header.alg !== 'RS256') throw new Error('alg');
  if (!verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) throw new Error('sig');
  if (payload.iss !== zone.issuer || payload.aud !== R || payload.exp < Date.now() / 1000) throw new Error('claims');
});

/** `policy`: decorators for the route (default `@RequireScopes('read')`); `options`: more module options; `first`: the token of the warm-up call. */
async function guardFor(cacheSize, observed = false, { policy = [RequireScopes('read')], options = {}, first = tokens[0] } = {}) {
  class Controller_ { list() {} }
  for (const decorator of policy) decorator(Controller_.prototype, 'list', Object.getOwnPropertyDescriptor(Controller_.prototype, 'list'));
  class M {}
  const validators = observed ? [{ provide: KEYCARD_TOKEN_VALIDATORS, useValue: [{ validate() {} }] }] : [];
  Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, verifiedTokenCacheSize: cacheSize, logger: { log() {}, warn() {}, error() {} }, ...options })], providers: validators })(M);
  const app = await NestFactory.create(M, { logger: false });
  await app.init();
  let decisions = 0;
  if (observed) app.get(DecisionEvents).subscribe(() => decisions++);
  const guard = app.get(KeycardGuard);
  const context = (token) => {
    const request = { method: 'GET', url: '/api/data', headers: { host: 'api.example.com', authorization: `Bearer ${token}` }, rawHeaders: ['Host', 'api.example.com', 'Authorization', `Bearer ${token}`], socket: {} };
    return { getType: () => 'http', getHandler: () => Controller_.prototype.list, getClass: () => Controller_, switchToHttp: () => ({ getRequest: () => request, getResponse: () => ({}) }) };
  };
  await guard.canActivate(context(first));
  if (observed && decisions === 0) throw new Error('the subscriber saw no decision');
  return { app, guard, check: (token) => guard.canActivate(context(token)) };
}

const cold = await guardFor(0);
const coldCost = await time('guard, cold path (verified-token cache off)', (i) => cold.check(tokens[i]));
await cold.app.close();
const cached = await guardFor(N);
for (const t of tokens) await cached.check(t);
const hitCost = await time('guard, verified-token cache hit', (i) => cached.check(tokens[i]));
const observed = await guardFor(N, true);
for (const t of tokens) await observed.check(t);
const observedHit = await time('guard, cache hit, one event subscriber + one TokenValidator', (i) => observed.check(tokens[i]));
await observed.app.close();

// Policies (issue 19): the same cache hit on a route whose requirement is a function of the call's
// arguments (evaluated per call, after verification), and with a scope hierarchy where a broader
// scope satisfies the route; against plain @RequireScopes on the same tokens.
const repoTokens = Array.from({ length: N }, (_, i) => zone.issueToken({ aud: R, scope: 'read repo:read repo:write', sub: `r${i}`, exp }));
const byVisibility = RequireScopes.fromArguments((args) => (args.body?.visibility === 'private' ? ['repo:private'] : ['repo:read']));
const policies = {};
for (const [name, shape] of Object.entries({
  plain: {},
  argumentFunction: { policy: [RequireScopes('read'), byVisibility] },
  hierarchy: { policy: [RequireScopes('read', 'repo:list')], options: { scopeHierarchy: { 'repo:write': ['repo:list'] } } },
})) {
  const guarded = await guardFor(N, false, { ...shape, first: repoTokens[0] });
  for (const t of repoTokens) await guarded.check(t);
  policies[name] = await time(`guard, cache hit, policy: ${name}`, (i) => guarded.check(repoTokens[i]));
  await guarded.app.close();
}

// The policy evaluation alone (no guard around it, so the load of a shared machine blurs it less):
// per call, a plain @RequireScopes against a function of the arguments on top of it.
const { Requirement } = await import('../dist/decision/policy/requirement.js');
const { ScopeHierarchy } = await import('../dist/decision/policy/scope-hierarchy.js');
const { holdsAllScopes } = await import('../dist/decision/judge.js');
const parts = { hierarchy: ScopeHierarchy.NONE, clock: { now: () => Date.now() }, leewaySeconds: 60, logger: { log() {}, warn() {}, error() {} } };
const visibility = (args) => (args.body?.visibility === 'private' ? ['repo:private'] : ['repo:read']);
const assessAgent = { scopes: ['read', 'repo:read'], claims: {} };
const assessJudge = { hasScopes: holdsAllScopes };
const assessCall = { rules: {}, context: { getType: () => 'http' }, carrier: { params: {}, query: {}, body: { visibility: 'public' } } };
function timeSync(label, fn, calls = 1_000_000) {
  const perCall = [];
  for (let round = 0; round < ROUNDS + 1; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) if (fn() !== undefined) throw new Error(`${label}: refused`);
    if (round > 0) perCall.push(Number(process.hrtime.bigint() - start) / 1000 / calls);
  }
  const { p50 } = stats(perCall);
  console.log(`${label.padEnd(58)} ${p50.toFixed(3).padStart(8)} µs/call (median of ${ROUNDS} rounds × ${calls})`);
  return p50;
}
const plainRequirement = Requirement.compile({ scopes: ['read'] }, 'Bench.plain', parts);
const argumentRequirement = Requirement.compile({ scopes: ['read'], fromArguments: visibility }, 'Bench.arguments', parts);
const assessPlain = timeSync('policy alone: plain @RequireScopes', () => plainRequirement.assess(assessAgent, assessCall, assessJudge));
const assessArguments = timeSync('policy alone: + a function of the arguments', () => argumentRequirement.assess(assessAgent, assessCall, assessJudge));

// The same cache hit through the ExecutionContext Nest builds for a route and for a resolver (a
// fresh request per call, as on the wire): what the guard itself costs in each context, without
// Nest's pipeline around it. Issue 10: GraphQL must cost no more than HTTP.
class Resolver_ { data() {} }
RequireScopes('read')(Resolver_.prototype, 'data', Object.getOwnPropertyDescriptor(Resolver_.prototype, 'data'));
const requestWith = (token) => ({ method: 'POST', url: '/graphql', headers: { host: 'api.example.com', authorization: `Bearer ${token}` }, rawHeaders: ['Host', 'api.example.com', 'Authorization', `Bearer ${token}`], socket: {} });
const info = { fieldName: 'data', path: { key: 'data' }, operation: { operation: 'query', selectionSet: { selections: [{ kind: 'Field', name: { value: 'data' } }] } } };
const httpContext = (token) => {
  const context = new ExecutionContextHost([requestWith(token), {}, () => {}], Resolver_, Resolver_.prototype.data);
  context.setType('http');
  return context;
};
const graphqlContext = (token) => {
  const request = requestWith(token);
  const context = new ExecutionContextHost([undefined, {}, { req: request, res: {} }, info], Resolver_, Resolver_.prototype.data);
  context.setType('graphql');
  return context;
};
for (const build of [httpContext, graphqlContext]) {
  if ((await cached.guard.canActivate(build(tokens[0]))) !== true) throw new Error(`${build.name} was not admitted`);
}
const httpHit = await time('guard, cache hit, Nest HTTP ExecutionContext', (i) => cached.guard.canActivate(httpContext(tokens[i])));
const graphqlHit = await time('guard, cache hit, Nest GraphQL ExecutionContext', (i) => cached.guard.canActivate(graphqlContext(tokens[i])));
await cached.app.close();

class E {}
Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, clientCredentials: { clientId: 'agent', clientSecret: 'micro-secret' } })] })(E);
const context = await NestFactory.createApplicationContext(E, { logger: false });
const exchange = context.get(TokenExchangeService);
const request = { subjectToken: tokens[0], resource: R, scope: 'read' };
await exchange.exchange(request);
const exchangeCost = await time('TokenExchangeService.exchange(), cache hit', () => exchange.exchange(request), 20_000);
await context.close();
await zone.stop();

console.log(`\ncold path ÷ floor: ${(coldCost / floor).toFixed(2)} (target ≤ 1.5); Node ${process.version}`);
console.log(`guard cache hit, GraphQL − HTTP: ${(graphqlHit - httpHit).toFixed(2)} µs (target ≤ 0)`);
console.log(`guard cache hit, + one event subscriber and one validator: +${(observedHit - hitCost).toFixed(2)} µs`);
console.log(`guard cache hit, argument-function policy − plain scopes: +${(policies.argumentFunction - policies.plain).toFixed(2)} µs (target < 2)`);
console.log(`guard cache hit, scope hierarchy − plain scopes: +${(policies.hierarchy - policies.plain).toFixed(2)} µs`);
console.log(`policy alone, function of the arguments − plain: +${(assessArguments - assessPlain).toFixed(3)} µs (target < 2)`);
console.log(JSON.stringify({ policyAlonePlainMicros: assessPlain, policyAloneArgumentsMicros: assessArguments, policyPlainMicros: policies.plain, policyArgumentFunctionMicros: policies.argumentFunction, policyHierarchyMicros: policies.hierarchy }));
console.log(JSON.stringify({ floorMicros: floor, coldMicros: coldCost, cacheHitMicros: hitCost, observedCacheHitMicros: observedHit, httpContextHitMicros: httpHit, graphqlContextHitMicros: graphqlHit, exchangeCacheHitMicros: exchangeCost }));
