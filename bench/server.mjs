// One benchmark server: a Nest app whose GET /api/data (or the GraphQL query `{ data { id name } }`)
// differs only in how it is protected.
// Started by bench/run.mjs as `node bench/server.mjs <variant> <zoneUrl> <audience>`, pinned to
// one core; talks to the parent over IPC: {ready, port} → 'cpu-start' / 'cpu-stop' → {cpuMicros}.
import 'reflect-metadata';
import { Controller, Get, Injectable, Module } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { resolve } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const [variant, zoneUrl, audience] = process.argv.slice(2);
// BENCH_BEFORE_DIST may be relative to the working directory (`.bench-before`): imported as a file URL.
if (process.env.BENCH_BEFORE_DIST) process.env.BENCH_BEFORE_DIST = pathToFileURL(resolve(process.env.BENCH_BEFORE_DIST)).href;

class DataController {
  list() {
    return { data: [{ id: 1, name: 'Team roster' }, { id: 2, name: 'Quarterly report' }], meta: { variant } };
  }
}
Get('api/data')(DataController.prototype, 'list', Object.getOwnPropertyDescriptor(DataController.prototype, 'list'));
Controller()(DataController);

/** A global guard that allows everything: what any guard costs in Nest's pipeline. */
function allowAll(withUser = false) {
  const user = { sub: 'user' };
  class AllowAll {
    canActivate(context) {
      if (withUser) context.switchToHttp().getRequest().user = user;
      return true;
    }
  }
  Injectable()(AllowAll);
  return { provide: APP_GUARD, useClass: AllowAll };
}

/** `@RequireScopes('read')` of the keycard build loaded, put on the route and the resolver (bench tokens carry `read`). */
let requiredScopes;

/** The build to load: `dist/`, or for `keycard-before` the one in BENCH_BEFORE_DIST (an A/B of two builds in one run). */
const keycardModule = async (cacheSize, dist = '../dist') => {
  const { KeycardModule, RequireScopes } = await import(`${dist}/index.js`);
  // The route (and the resolver) as apps write them: plain @RequireScopes, from the build under test.
  requiredScopes = RequireScopes('read');
  return KeycardModule.forRoot({ zoneUrl, resource: audience, verifiedTokenCacheSize: cacheSize, logger: { log() {}, warn() {}, error() {} } });
};

/** How the route (or the resolver) is protected: imports, providers, and middleware for `configure`. */
async function protection(name) {
  const imports = [];
  const providers = [];
  let configure;
  if (name === 'baseline') {
    // No protection: the ceiling for this app on this machine.
  } else if (name === 'noop-guard') {
    providers.push(allowAll());
  } else if (name === 'noop-user') {
    providers.push(allowAll(true));
  } else if (name === 'keycard-allow') {
    // The module imported and bound, its guard answering `true` at once: what the module costs beside its guard.
    // Its guard instance answers `true` (below, once the app is made): other apps of the process keep theirs.
    imports.push(await keycardModule(10_000));
  } else if (name === 'keycard' || name === 'keycard-nocache' || name === 'keycard-revocation') {
    imports.push(await keycardModule(name === 'keycard-nocache' ? 0 : 10_000));
    if (name === 'keycard-revocation') imports.push(await revocationModule());
  } else if (name === 'keycard-before' || name === 'keycard-nocache-before' || name === 'keycard-revocation-before') {
    imports.push(await keycardModule(name === 'keycard-nocache-before' ? 0 : 10_000, process.env.BENCH_BEFORE_DIST));
    if (name === 'keycard-revocation-before') imports.push(await revocationModule(process.env.BENCH_BEFORE_DIST));
  } else if (name === 'ideal' || name === 'fast-jwt') {
    // Issue 24's anchors, with the zone's keys fetched once at start (see bench/peer-guards.mjs).
    const { fastJwtGuard, idealGuard, zoneKeys } = await import('./peer-guards.mjs');
    const keys = await zoneKeys(zoneUrl);
    // The route's requirement, as the keycard variants' @RequireScopes('read') (bench tokens carry `read`).
    const scope = 'read';
    const guard = name === 'ideal' ? idealGuard({ keys, issuer: zoneUrl, audience, scope }) : await fastJwtGuard({ keys, issuer: zoneUrl, audience, cacheSize: 10_000, scope });
    providers.push({ provide: APP_GUARD, useClass: guard });
  } else if (name === 'passport') {
    // What the NestJS docs and most posts show: AuthGuard('jwt') + passport-jwt + jwks-rsa with caching.
    const { PassportStrategy, AuthGuard } = await import('@nestjs/passport');
    const { Strategy, ExtractJwt } = await import('passport-jwt');
    const { passportJwtSecret } = await import('jwks-rsa');
    class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
      constructor() {
        super({
          jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
          secretOrKeyProvider: passportJwtSecret({ cache: true, rateLimit: true, jwksRequestsPerMinute: 5, jwksUri: `${zoneUrl}/jwks` }),
          audience,
          issuer: zoneUrl,
          algorithms: ['RS256', 'ES256'],
        });
      }
      validate(payload) {
        return payload;
      }
    }
    Injectable()(JwtStrategy);
    providers.push(JwtStrategy, { provide: APP_GUARD, useClass: AuthGuard('jwt') });
  } else if (name === 'auth0') {
    // Auth0's express-oauth2-jwt-bearer (jose-based) as Nest middleware on the same route.
    const { auth } = await import('express-oauth2-jwt-bearer');
    const middleware = auth({ issuer: zoneUrl, jwksUri: `${zoneUrl}/jwks`, audience, tokenSigningAlg: 'RS256' });
    configure = (consumer) => consumer.apply(middleware).forRoutes('api/data');
  } else {
    throw new Error(`unknown variant ${name}`);
  }
  return { imports, providers, configure };
}

/** `<protection>` serves GET /api/data; `graphql-<protection>` the same data as a GraphQL query (Apollo on Express). */
async function moduleFor(variant) {
  const graphql = variant.startsWith('graphql-');
  const { imports, providers, configure } = await protection(graphql ? variant.slice('graphql-'.length) : variant);
  if (graphql) {
    const { GraphQLModule, Query, Resolver } = await import('@nestjs/graphql');
    const { ApolloDriver } = await import('@nestjs/apollo');
    class DataResolver {
      data() {
        return new DataController().list().data;
      }
    }
    Query('data')(DataResolver.prototype, 'data', Object.getOwnPropertyDescriptor(DataResolver.prototype, 'data'));
    requiredScopes?.(DataResolver.prototype, 'data', Object.getOwnPropertyDescriptor(DataResolver.prototype, 'data'));
    Resolver()(DataResolver);
    imports.push(GraphQLModule.forRoot({ driver: ApolloDriver, typeDefs: 'type Item { id: Int name: String } type Query { data: [Item] }', graphiql: false }));
    providers.push(DataResolver);
  }
  requiredScopes?.(DataController.prototype, 'list', Object.getOwnPropertyDescriptor(DataController.prototype, 'list'));
  class BenchModule {}
  if (configure) BenchModule.prototype.configure = configure;
  Module({ imports, providers, controllers: [DataController] })(BenchModule);
  return BenchModule;
}

/** The revocation list of the `*-revocation` variants: on, without Redis (the hot path never touches it). */
async function revocationModule(dist = '../dist') {
  const { KeycardRevocationModule } = await import(`${dist}/index.js`);
  return KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: 7200 });
}

/** Catalogue X25: 100 000 entries (sessions, users, agents) that match none of the bench tokens. */
async function loadRevocations(app, name) {
  const { RevocationService } = await import(`${name.endsWith('-before') ? process.env.BENCH_BEFORE_DIST : '../dist'}/index.js`);
  const revocations = app.get(RevocationService);
  const kinds = ['sessionId', 'subject', 'agent'];
  for (let i = 0; i < 100_000; i++) await revocations.revoke({ issuer: zoneUrl, [kinds[i % 3]]: `revoked-${i}` });
}

/**
 * `a+b+…` (bench/pipeline-ab.mjs with PIPELINE_SHARED=1): one app per variant in this one process,
 * each on its own port, so the variants share the JIT's work on Nest, Express and Node and a pair
 * of them differs only in what the apps do.
 */
const apps = [];
for (const name of variant.split('+')) {
  const app = await NestFactory.create(await moduleFor(name), { logger: ['error'] });
  if (name === 'keycard-allow') app.get((await import('../dist/index.js')).KeycardGuard).canActivate = () => true;
  if (name.includes('-revocation')) await loadRevocations(app, name);
  await app.listen(0, '127.0.0.1');
  // bench/pipeline-ab.mjs keeps its sockets open while it drives the other variants: longer than Node's 5 s.
  if (process.env.BENCH_KEEP_ALIVE_MS) {
    const server = app.getHttpServer();
    server.keepAliveTimeout = Number(process.env.BENCH_KEEP_ALIVE_MS);
    // And longer than Node's headers and request timeouts (60 s, 300 s), which also answer 408 and
    // close a keep-alive socket left idle that long (while the other apps of a run warm up).
    server.headersTimeout = 0;
    server.requestTimeout = 0;
  }
  apps.push(app);
}
const [app] = apps;
let cpuStart;
let eluStart;
/** Garbage-collection pauses during the timed run (ms, and how many of each kind: minor = scavenge, major = mark-compact). */
let gc;
const gcObserver = new PerformanceObserver((list) => {
  if (gc === undefined) return;
  for (const entry of list.getEntries()) {
    gc.ms += entry.duration;
    if (entry.detail?.kind === 1) gc.minor++;
    else gc.major++;
  }
});
gcObserver.observe({ entryTypes: ['gc'] });
/**
 * Profiles of the timed runs only, from the first 'cpu-start' to 'exit' (start-up, warm-up and
 * loading left out): BENCH_CPU_PROFILE=dir writes `<dir>/<variant>-<pid>.cpuprofile`;
 * BENCH_ALLOC_PROFILE=dir a sampling allocation profile with the objects collected since included
 * (what is allocated per request and by whom, not only what survives) as `.heapprofile`. Both open
 * in DevTools; the time between runs is `(idle)`.
 */
const profiles = [['Profiler', process.env.BENCH_CPU_PROFILE, 'cpuprofile'], ['HeapProfiler', process.env.BENCH_ALLOC_PROFILE, 'heapprofile']].filter(([, dir]) => dir);
const inspector = profiles.length > 0 ? new (await import('node:inspector')).Session() : undefined;
inspector?.connect();
const post = (method, params) => new Promise((resolve, reject) => inspector.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
let profiling;
async function startProfiles() {
  for (const [domain] of profiles) {
    if (domain === 'Profiler') await post('Profiler.enable').then(() => post('Profiler.start'));
    else await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
}
async function writeProfiles() {
  const { writeFileSync } = await import('node:fs');
  for (const [domain, dir, ext] of profiles) {
    const { profile } = await post(domain === 'Profiler' ? 'Profiler.stop' : 'HeapProfiler.stopSampling');
    writeFileSync(`${dir}/${variant}-${process.pid}.${ext}`, JSON.stringify(profile));
  }
}

process.on('message', (message) => {
  if (message === 'cpu-start') {
    if (inspector && profiling === undefined) profiling = startProfiles();
    gc = { ms: 0, minor: 0, major: 0 };
    eluStart = performance.eventLoopUtilization();
    cpuStart = process.cpuUsage();
    process.send({ started: true });
  }
  if (message === 'cpu-stop') {
    const used = process.cpuUsage(cpuStart);
    const elu = performance.eventLoopUtilization(eluStart).utilization;
    // A tick later, so the observer has seen the last pauses of the run.
    setImmediate(() => process.send({ cpuMicros: used.user + used.system, heapMB: process.memoryUsage().heapUsed / 1048576, gc, elu }));
  }
  if (message === 'exit') void Promise.resolve(profiling && profiling.then(writeProfiles)).then(() => Promise.all(apps.map((a) => a.close()))).then(() => process.exit(0));
});
process.send({ ready: true, port: app.getHttpServer().address().port, ports: apps.map((a) => a.getHttpServer().address().port) });
