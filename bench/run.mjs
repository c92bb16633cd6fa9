// npm run bench [-- --quick]: the guard side by side with its peers, same machine, same run, in two
// sections.
//  1. Sequential (BENCH_SEQUENTIAL=0 skips it): each variant runs in a fresh server process pinned
//     to core 0 (taskset) for 6 s while autocannon drives it from this process pinned to core 1,
//     one variant after another, over rounds; medians reported. Every peer row is here (passport,
//     express-oauth2-jwt-bearer, ES256, revocations…), but a slow period of the machine lands on one
//     variant of a round and not on its pair.
//  2. Interleaved (BENCH_INTERLEAVED=0 skips it; bench/interleaved-section.mjs): issue 24's rows,
//     long-lived servers driven in turn in short blocks, CPU read per block, so a slow period hits
//     every variant of a round alike. The issue-24 goal lines come from this section.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import autocannon from 'autocannon';
import { TestZone } from '../dist/testing/index.js';
import { median } from './interleaved.mjs';
import { interleavedSection } from './interleaved-section.mjs';

const quick = process.argv.includes('--quick');
const SEQUENTIAL = process.env.BENCH_SEQUENTIAL !== '0';
const INTERLEAVED = process.env.BENCH_INTERLEAVED !== '0';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (quick ? 1 : 3));
const DURATION = quick ? 5 : 6;
const WARMUP = quick ? 1 : 2;
const CONNECTIONS = 50;
const POOL = 10_000;
const AUDIENCE = 'https://api.example.com';
const CORES = os.cpus().length;
const pin = (core) => (CORES > 1 ? ['taskset', ['-c', String(core)]] : undefined);

try {
  if (CORES > 1) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
} catch {
  console.warn('taskset unavailable: running unpinned');
}

const zone = await TestZone.start({ audience: AUDIENCE });
const exp = Math.floor(Date.now() / 1000) + 3600;
const single = zone.issueToken({ scope: 'read', exp });
process.stdout.write(`issuing ${POOL} tokens for the pool runs… `);
const pool = Array.from({ length: POOL }, (_, i) => zone.issueToken({ scope: 'read', sub: `user-${i}`, client_id: `agent-${i % 100}`, exp }));
console.log('done');
/**
 * Keycard's token shape (issue 24): a new token per request. The pools are larger than every
 * verified-token cache in the run (10 000), so each request pays a miss and an insertion.
 */
const FRESH = 12_000;
process.stdout.write(`issuing ${FRESH} RS256${SEQUENTIAL ? ` and ${FRESH} ES256` : ''} tokens for the fresh-token runs… `);
const fresh = {
  'fresh': [...pool, ...Array.from({ length: FRESH - POOL }, (_, i) => zone.issueToken({ scope: 'read', sub: `user-${POOL + i}`, client_id: `agent-${i % 100}`, exp }))],
  // ES256 rows are in the sequential section only.
  'fresh-es': SEQUENTIAL ? Array.from({ length: FRESH }, (_, i) => zone.issueToken({ scope: 'read', sub: `user-${i}`, client_id: `agent-${i % 100}`, exp }, { kid: 'ec1' })) : [],
};
console.log('done');

/**
 * Rows that only pair with rows of the interleaved section, which measures them the robust way:
 * left out of the sequential section (as the allow-all guards are) unless BENCH_MATCH or BENCH_ONLY
 * names them, so the whole `npm run bench` stays under ~35 minutes (the interleaved section about 10).
 */
const INTERLEAVED_ONLY = 'interleaved only';
/**
 * [name, server variant, token mode, INTERLEAVED_ONLY?]. Modes: none; single (one token: cache hits); pool (10 000
 * tokens already seen once); fresh / fresh-es (a token the server has not seen on every request,
 * RS256 / ES256). BENCH_ONLY=a,b limits the runs to those variants, BENCH_MATCH=regex to rows whose
 * name matches (exploration).
 */
const ALL_RUNS = [
  ['baseline', 'baseline', 'none'],
  ['nestjs-keycard', 'keycard', 'single'],
  ['nestjs-keycard (10k pool)', 'keycard', 'pool'],
  ['nestjs-keycard, cache off', 'keycard-nocache', 'single'],
  ['nestjs-keycard, fresh RS256', 'keycard', 'fresh'],
  ['nestjs-keycard, cache off, fresh RS256', 'keycard-nocache', 'fresh'],
  ['nestjs-keycard, fresh ES256', 'keycard', 'fresh-es'],
  ['ideal guard', 'ideal', 'single'],
  ['ideal guard, fresh RS256', 'ideal', 'fresh'],
  ['ideal guard, fresh ES256', 'ideal', 'fresh-es'],
  ['fast-jwt', 'fast-jwt', 'single', INTERLEAVED_ONLY],
  ['fast-jwt, fresh RS256', 'fast-jwt', 'fresh', INTERLEAVED_ONLY],
  ['fast-jwt, fresh ES256', 'fast-jwt', 'fresh-es'],
  ['nestjs-keycard, 100k revocations', 'keycard-revocation', 'single'],
  ['nestjs-keycard, 100k revocations (10k pool)', 'keycard-revocation', 'pool'],
  ['hand-rolled passport', 'passport', 'single'],
  ['hand-rolled passport (10k pool)', 'passport', 'pool'],
  ['hand-rolled passport, fresh RS256', 'passport', 'fresh'],
  ['express-oauth2-jwt-bearer', 'auth0', 'single'],
  ['express-oauth2-jwt-bearer (10k pool)', 'auth0', 'pool'],
  ['express-oauth2-jwt-bearer, fresh RS256', 'auth0', 'fresh'],
  ['a global guard that allows all', 'noop-guard', 'single'],
  ['GraphQL baseline', 'graphql-baseline', 'none'],
  ['GraphQL, a global guard that allows all', 'graphql-noop-guard', 'single'],
  ['GraphQL nestjs-keycard', 'graphql-keycard', 'single'],
  ['GraphQL nestjs-keycard (10k pool)', 'graphql-keycard', 'pool'],
  ['GraphQL nestjs-keycard, fresh RS256', 'graphql-keycard', 'fresh'],
  ['GraphQL ideal guard, fresh RS256', 'graphql-ideal', 'fresh', INTERLEAVED_ONLY],
  ['GraphQL nestjs-keycard, 100k revocations', 'graphql-keycard-revocation', 'single'],
];
if (process.env.BENCH_BEFORE_DIST) {
  // An A/B of two builds in the same rounds: BENCH_BEFORE_DIST=/abs/path/to/an/older/dist.
  ALL_RUNS.push(
    ['nestjs-keycard before, fresh RS256', 'keycard-before', 'fresh'],
    ['nestjs-keycard before', 'keycard-before', 'single'],
    ['nestjs-keycard before, 100k revocations', 'keycard-revocation-before', 'single'],
    ['nestjs-keycard before, 100k revocations (10k pool)', 'keycard-revocation-before', 'pool'],
    ['nestjs-keycard before (10k pool)', 'keycard-before', 'pool'],
    ['nestjs-keycard before, cache off', 'keycard-nocache-before', 'single'],
    ['GraphQL nestjs-keycard before', 'graphql-keycard-before', 'single'],
    ['GraphQL nestjs-keycard before (10k pool)', 'graphql-keycard-before', 'pool'],
  );
}
const only = process.env.BENCH_ONLY?.split(',');
const match = process.env.BENCH_MATCH ? new RegExp(process.env.BENCH_MATCH) : undefined;
const RUNS = ALL_RUNS.filter(([name, variant, , interleavedOnly]) => {
  if (only) return only.includes(variant);
  if (match) return match.test(name) || name === 'baseline' || name === 'GraphQL baseline';
  return variant !== 'noop-guard' && variant !== 'graphql-noop-guard' && interleavedOnly === undefined;
});

function startServer(variant) {
  // BENCH_NODE_ARGS (e.g. --cpu-prof) is passed to the server processes, for profiling.
  const args = [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), 'bench/server.mjs', variant, zone.issuer, AUDIENCE];
  const [cmd, cmdArgs] = pin(0) ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(cmd, cmdArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('message', (m) => resolve({ child, port: m.port }));
  });
}

const ask = (child, message) => new Promise((resolve) => {
  child.once('message', resolve);
  child.send(message);
});

const GRAPHQL_QUERY = JSON.stringify({ query: '{ data { id name } }' });

/**
 * The pool's cursor carries over from one load to the next, so a variant's timed run continues the walk
 * where its warm-up left it. Every pool variant first walks the whole pool twice (`warmPool`): the 10k
 * rows measure a steady state with 10 000 agents already seen, whatever the variant's request rate.
 * (Before, each load restarted at token 0: HTTP, at ~10 000 req/s, wrapped round the pool and hit the
 * cache while GraphQL, at ~1 300 req/s, never did and paid a cold verification on most requests.)
 * The cold cost on its own is the cache-off row.
 */
let poolCursor = 0;

function load(port, mode, duration, variant, amount) {
  const options = variant.startsWith('graphql')
    ? { url: `http://127.0.0.1:${port}/graphql`, method: 'POST', body: GRAPHQL_QUERY, connections: CONNECTIONS, duration, pipelining: 1 }
    : { url: `http://127.0.0.1:${port}/api/data`, connections: CONNECTIONS, duration, pipelining: 1 };
  const json = variant.startsWith('graphql') ? { 'content-type': 'application/json' } : {};
  options.headers = json;
  if (mode === 'single') options.headers = { ...json, authorization: `Bearer ${single}` };
  if (mode !== 'none' && mode !== 'single') {
    const tokens = mode === 'pool' ? pool : fresh[mode];
    options.requests = [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${tokens[poolCursor++ % tokens.length]}` } }) }];
  }
  if (amount) {
    delete options.duration;
    options.amount = amount;
  }
  return autocannon(options);
}

/**
 * Two requests per pool token, so every token is in the verified-token cache before the timed run
 * (a token is kept from its second verification on: issue 24).
 */
const warmPool = (port, variant) => load(port, 'pool', undefined, variant, 2 * POOL);

/**
 * Every variant is warmed with as many requests as a pool variant (`2 × POOL`, in its own mode),
 * then for WARMUP seconds. Before, only pool variants had those 20 000 requests first: the JIT and
 * the heap of a one-token server had seen half as many requests when its timed run began, and its
 * rows read +20–37 µs over baseline where the same guard on the 10k pool (also cache hits) read
 * −2…+11 µs, the difference all in collections and Node's and Express's own code.
 */
const warm = (port, mode, variant) => (mode === 'pool' ? warmPool(port, variant) : load(port, mode, undefined, variant, 2 * POOL));

async function measure([name, variant, mode]) {
  const { child, port } = await startServer(variant);
  poolCursor = 0;
  await warm(port, mode, variant);
  await load(port, mode, WARMUP, variant);
  await ask(child, 'cpu-start');
  const result = await load(port, mode, DURATION, variant);
  const { cpuMicros, heapMB, gc, elu } = await ask(child, 'cpu-stop');
  child.send('exit');
  await new Promise((r) => child.once('exit', r));
  const ok = result['2xx'];
  if (result.non2xx > 0 || result.errors > 0) console.warn(`  ${name}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  const requests = Math.max(1, result.requests.total);
  return { name, rps: ok / DURATION, p50: result.latency.p50, p99: result.latency.p99, cpuPerReq: cpuMicros / requests, heapMB, gcPerReq: (gc.ms * 1000) / requests, gcMajor: gc.major, gcMinor: gc.minor, elu };
}

/**
 * The sequential section: every variant of RUNS in its own server process, one after another, 6 s
 * each, over ROUNDS rounds; prints the table, the peer ratios and the paired lines, and returns them
 * for results/latest.json. A slow period of the machine lands on one variant of a round and not on
 * its pair here: the issue-24 goals are read from the interleaved section.
 */
async function sequentialSection() {
  const samples = new Map(RUNS.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = RUNS.map((_, i) => RUNS[(i + round * 3) % RUNS.length]);
    console.log(`round ${round + 1}/${ROUNDS}: ${order.map((r) => r[0]).join(' → ')}`);
    for (const run of order) {
      const sample = await measure(run);
      sample.round = round;
      samples.get(run[0]).push(sample);
      console.log(`  ${run[0].padEnd(38)} ${sample.rps.toFixed(0).padStart(6)} req/s  p99 ${sample.p99} ms  ${sample.cpuPerReq.toFixed(0)} µs CPU/req  GC ${sample.gcPerReq.toFixed(1)} µs/req (${sample.gcMinor} minor, ${sample.gcMajor} major)  ELU ${sample.elu.toFixed(2)}`);
    }
  }

  const rows = RUNS.map(([name]) => {
    const s = samples.get(name);
    return { name, rps: median(s.map((x) => x.rps)), p50: median(s.map((x) => x.p50)), p99: median(s.map((x) => x.p99)), cpuPerReq: median(s.map((x) => x.cpuPerReq)), heapMB: median(s.map((x) => x.heapMB)) };
  });
  const by = Object.fromEntries(rows.map((r) => [r.name, r]));
  const base = by.baseline?.rps ?? NaN;
  const ratio = (a, b) => (by[a] && by[b] ? (by[a].rps / by[b].rps).toFixed(2) : 'n/a');

  console.log(`\nsequential section: each variant in its own server process, one after another, ${DURATION} s each, medians over ${ROUNDS} round(s) (single-process figures: a slow period of the machine moves one row of a round, not its pair)\n`);
  console.log(`| variant | req/s | p50 ms | p99 ms | server CPU µs/req | × baseline | server heap MB |`);
  console.log(`|---|---:|---:|---:|---:|---:|---:|`);
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.cpuPerReq.toFixed(0)} | ${(r.rps / base).toFixed(2)} | ${r.heapMB.toFixed(1)} |`);
  }
  const peers = {
    'single token: keycard ÷ passport': ratio('nestjs-keycard', 'hand-rolled passport'),
    'single token: keycard ÷ express-oauth2-jwt-bearer': ratio('nestjs-keycard', 'express-oauth2-jwt-bearer'),
    '10k pool: keycard ÷ passport': ratio('nestjs-keycard (10k pool)', 'hand-rolled passport (10k pool)'),
    '10k pool: keycard ÷ express-oauth2-jwt-bearer': ratio('nestjs-keycard (10k pool)', 'express-oauth2-jwt-bearer (10k pool)'),
    'GraphQL, single token: keycard ÷ GraphQL baseline': ratio('GraphQL nestjs-keycard', 'GraphQL baseline'),
    'GraphQL, 10k pool: keycard ÷ GraphQL baseline': ratio('GraphQL nestjs-keycard (10k pool)', 'GraphQL baseline'),
    'HTTP, single token: keycard ÷ baseline': ratio('nestjs-keycard', 'baseline'),
    // Catalogue X25: a revocation list of 100 000 entries must not change these ratios.
    'HTTP, single token: 100k revocations ÷ keycard': ratio('nestjs-keycard, 100k revocations', 'nestjs-keycard'),
    'HTTP, 10k pool: 100k revocations ÷ keycard': ratio('nestjs-keycard, 100k revocations (10k pool)', 'nestjs-keycard (10k pool)'),
    'GraphQL, single token: 100k revocations ÷ keycard': ratio('GraphQL nestjs-keycard, 100k revocations', 'GraphQL nestjs-keycard'),
  };
  /** What the guard costs per request over its own baseline, in server CPU µs: GraphQL must not cost more than HTTP. */
  const overBaseline = (a, b) => (by[a] && by[b] ? `${(by[a].cpuPerReq - by[b].cpuPerReq).toFixed(0)} µs` : 'n/a');
  peers['guard CPU over baseline, HTTP single token'] = overBaseline('nestjs-keycard', 'baseline');
  peers['guard CPU over baseline, GraphQL single token'] = overBaseline('GraphQL nestjs-keycard', 'GraphQL baseline');
  peers['guard CPU over baseline, HTTP 10k pool'] = overBaseline('nestjs-keycard (10k pool)', 'baseline');
  peers['guard CPU over baseline, GraphQL 10k pool'] = overBaseline('GraphQL nestjs-keycard (10k pool)', 'GraphQL baseline');
  console.log('\nsequential, single-process figures:');
  for (const [label, value] of Object.entries(peers)) console.log(`${label}: ${value}${String(value).endsWith('µs') ? '' : '×'}`);

  /**
   * Paired within rounds: each row's server CPU per request over its own baseline (HTTP or GraphQL)
   * and its req/s ÷ the baseline's, taken in the same round and then the median over rounds. The
   * variants of a round ran one after another, so a slow period of the machine can move one side of
   * a difference and not the other: the interleaved section is the instrument for differences.
   */
  const baselineOf = (name) => (name.startsWith('GraphQL') ? 'GraphQL baseline' : 'baseline');
  const paired = Object.fromEntries(RUNS.map(([name]) => {
    const base = samples.get(baselineOf(name)) ?? [];
    const pairs = samples.get(name).map((s) => [s, base.find((b) => b.round === s.round)]).filter(([, b]) => b !== undefined);
    return [name, { cpuOver: median(pairs.map(([s, b]) => s.cpuPerReq - b.cpuPerReq)), ratio: median(pairs.map(([s, b]) => s.rps / b.rps)) }];
  }));
  console.log(`\nsequential, paired within rounds (median over ${ROUNDS} round(s); the variants of a round ran at different times):\n\n| variant | server CPU µs/req over its baseline | req/s × its baseline |\n|---|---:|---:|`);
  for (const [name] of RUNS) console.log(`| ${name} | ${paired[name].cpuOver.toFixed(0)} | ${paired[name].ratio.toFixed(2)} |`);
  /** The sequential section's own gaps (issue 24's goals are read from the interleaved section); with BENCH_BEFORE_DIST, issue 18's rows against the build before. */
  /** Row a − row b in server CPU µs/req, paired within rounds: the median, and the least and most of the rounds (how far one round can stray). */
  const coldGap = (a, b) => {
    if (!samples.get(a) || !samples.get(b)) return undefined;
    const gaps = samples.get(a).map((s) => [s, samples.get(b).find((t) => t.round === s.round)]).filter(([, t]) => t !== undefined);
    const differences = gaps.map(([s, t]) => s.cpuPerReq - t.cpuPerReq);
    return differences.length === 0 ? undefined : { median: median(differences), least: Math.min(...differences), most: Math.max(...differences) };
  };
  const signed = (micros) => `${micros >= 0 ? '+' : ''}${micros.toFixed(0)}`;
  const goals = {};
  for (const [label, a, b] of [
    ['cold path, RS256 HTTP: keycard − ideal', 'nestjs-keycard, fresh RS256', 'ideal guard, fresh RS256'],
    ['cold path, ES256 HTTP: keycard − ideal', 'nestjs-keycard, fresh ES256', 'ideal guard, fresh ES256'],
    ['cold path, RS256 GraphQL: keycard − ideal', 'GraphQL nestjs-keycard, fresh RS256', 'GraphQL ideal guard, fresh RS256'],
    ['cold path, RS256 HTTP: keycard − fast-jwt', 'nestjs-keycard, fresh RS256', 'fast-jwt, fresh RS256'],
    ['cache hit, HTTP: keycard − fast-jwt', 'nestjs-keycard', 'fast-jwt'],
    ['cold path, RS256 HTTP: keycard − keycard before', 'nestjs-keycard, fresh RS256', 'nestjs-keycard before, fresh RS256'],
    // Issue 18: the decision core must not make these rows dearer than the build before it (BENCH_BEFORE_DIST).
    ['cache hit, HTTP: keycard − keycard before', 'nestjs-keycard', 'nestjs-keycard before'],
    ['10k pool, HTTP: keycard − keycard before', 'nestjs-keycard (10k pool)', 'nestjs-keycard before (10k pool)'],
    ['cache off, HTTP: keycard − keycard before', 'nestjs-keycard, cache off', 'nestjs-keycard before, cache off'],
    ['cache hit, GraphQL: keycard − keycard before', 'GraphQL nestjs-keycard', 'GraphQL nestjs-keycard before'],
    ['10k pool, GraphQL: keycard − keycard before', 'GraphQL nestjs-keycard (10k pool)', 'GraphQL nestjs-keycard before (10k pool)'],
    ['100k revocations, HTTP single token: keycard − keycard before', 'nestjs-keycard, 100k revocations', 'nestjs-keycard before, 100k revocations'],
    ['100k revocations, HTTP 10k pool: keycard − keycard before', 'nestjs-keycard, 100k revocations (10k pool)', 'nestjs-keycard before, 100k revocations (10k pool)'],
  ]) {
    const gap = coldGap(a, b);
    if (gap === undefined) continue;
    goals[label] = { cpuMicros: gap.median, cpuMicrosRange: [gap.least, gap.most], ratioDifference: paired[a].ratio - paired[b].ratio };
    console.log(`sequential, ${label}: ${signed(gap.median)} µs server CPU/req (rounds ${signed(gap.least)}…${signed(gap.most)}), req/s ratio ${paired[a].ratio.toFixed(2)} vs ${paired[b].ratio.toFixed(2)}`);
  }
  return { rows, peers, paired, goals };
}

const startedAt = Date.now();
const sequential = SEQUENTIAL ? await sequentialSection() : {};
const sequentialSeconds = (Date.now() - startedAt) / 1000;
if (SEQUENTIAL) console.log(`(sequential section: ${Math.round(sequentialSeconds)} s)`);
const interleaved = INTERLEAVED ? await interleavedSection({ issuer: zone.issuer, audience: AUDIENCE, single, fresh: fresh.fresh, quick }) : undefined;
await zone.stop();

const machine = { node: process.version, cpu: os.cpus()[0]?.model, cores: CORES, pinned: CORES > 1, rounds: ROUNDS, durationSeconds: DURATION, connections: CONNECTIONS, sequentialSeconds, date: new Date().toISOString(), loadAverage: os.loadavg() };
console.log(`\n${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; sequential: ${ROUNDS} round(s) × ${DURATION} s, ${CONNECTIONS} connections, medians; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; on a shared VM`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify({ machine, ...sequential, interleaved }, null, 2) + '\n');
