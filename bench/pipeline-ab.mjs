// npm run bench:pipeline-ab: server CPU per request through the WHOLE Nest HTTP pipeline (Express,
// router, guard, handler, JSON answer; for `graphql-*` variants Apollo's POST /graphql with the
// query `{ data { id name } }`), several variants side by side, in alternating blocks.
//
// `npm run bench`'s sequential section measures each variant in its own 6 s run and is noisy (±0.05
// of baseline on a shared machine). Here (bench/interleaved.mjs, the driver `npm run bench`'s
// interleaved section uses too) every variant is a long-lived `bench/server.mjs` process (pinned to
// core 0, as in `npm run bench`), kept warm, and driven in turn, block after block, over keep-alive
// sockets that stay open (no connection set-up in the figures): each block reads the server's own
// CPU time (`process.cpuUsage`) before and after, so a round the machine slowed down moves every
// variant of that round together, and the report is the median over rounds of each variant's CPU per
// request minus the first variant's in the same round.
//
// PIPELINE_VARIANTS=variant:mode,… (default `baseline:none,noop-guard:single,keycard:single`);
// variants as bench/server.mjs names them (`keycard-before` needs BENCH_BEFORE_DIST, a dist inside
// this tree, e.g. `.bench-before`); modes: none, single (one token: cache hits), fresh (a token the
// server has not seen on every request: 12 000 RS256 tokens cycled past a 10 000-entry cache).
// Every variant is first warmed with 12 000 requests of its own kind, then two blocks.
// PIPELINE_ROUNDS (default 30), PIPELINE_BLOCK requests per block (default 1 500), PIPELINE_PAIRS
// (default 1): how many processes of each variant, alternated, so one process's luck (JIT, heap
// layout) is not the variant's figure. BENCH_NODE_ARGS goes to the servers (--cpu-prof, --heap-prof).
// PIPELINE_COMPARE=a/b,… prints a − b paired within rounds (e.g. `graphql-keycard:fresh/graphql-ideal:fresh`).
// BENCH_CPU_PROFILE=dir (a process per variant): each server's CPU profile of its timed blocks, and
// the guard's own share read from it per process (bench/guard-profile.mjs): the module's cost to a
// few µs, where the whole server's CPU per request moves by tens between processes.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { TestZone } from '../dist/testing/index.js';
import { readdirSync, statSync } from 'node:fs';
import { guardTimeOf } from './guard-profile.mjs';
import { CONNECTIONS, interleaved, median, pairedBy, parseVariants } from './interleaved.mjs';

const AUDIENCE = 'https://api.example.com';
const ROUNDS = Number(process.env.PIPELINE_ROUNDS ?? 30);
const BLOCK = Number(process.env.PIPELINE_BLOCK ?? 1500);
const PAIRS = Number(process.env.PIPELINE_PAIRS ?? 1);
/** PIPELINE_SHARED=1: every variant an app of one process (per pair), so they share the JIT's work on Nest, Express and Node. */
const SHARED = process.env.PIPELINE_SHARED === '1';
const FRESH = 12_000;
const VARIANTS = parseVariants(process.env.PIPELINE_VARIANTS ?? 'baseline:none,noop-guard:single,keycard:single');
const CORES = os.cpus().length;
if (CORES > 1) {
  try {
    execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
  } catch {
    console.warn('taskset unavailable: running unpinned');
  }
}

const zone = await TestZone.start({ audience: AUDIENCE });
const exp = Math.floor(Date.now() / 1000) + 3600;
const single = zone.issueToken({ scope: 'read', exp });
const needsFresh = VARIANTS.some((v) => v.mode === 'fresh');
const fresh = needsFresh ? Array.from({ length: FRESH }, (_, i) => zone.issueToken({ scope: 'read', sub: `user-${i}`, client_id: `agent-${i % 100}`, exp })) : [];
const runStartedMs = Date.now();
const samples = await interleaved({ variants: VARIANTS, rounds: ROUNDS, block: BLOCK, pairs: PAIRS, shared: SHARED, issuer: zone.issuer, audience: AUDIENCE, single, fresh, warmup: FRESH, log: console.warn });
await zone.stop();

const first = VARIANTS[0].name;
const pairedOver = (name, field) => median(pairedBy(samples, name, first, (s, b) => s[field] - b[field]));
console.log(`\nserver CPU per request through the whole Nest HTTP pipeline (${ROUNDS} rounds × ${BLOCK} requests, ${PAIRS} process(es) ${SHARED ? 'each serving every variant' : 'per variant'}, ${CONNECTIONS} keep-alive connections)\n`);
console.log(`| variant | CPU µs/req | − ${first}, paired | of which GC µs/req | GC − ${first}, paired |\n|---|---:|---:|---:|---:|`);
for (const { name } of VARIANTS) {
  const s = samples.get(name);
  console.log(`| ${name} | ${median(s.map((x) => x.cpu)).toFixed(1)} | ${pairedOver(name, 'cpu').toFixed(1)} | ${median(s.map((x) => x.gc)).toFixed(1)} | ${pairedOver(name, 'gc').toFixed(1)} |`);
}
// PIPELINE_COMPARE=a/b,…: the median over rounds of a − b, paired within each round and process (e.g. keycard over the ideal guard).
for (const compared of process.env.PIPELINE_COMPARE?.split(',').filter(Boolean) ?? []) {
  const [a, b] = compared.split('/');
  if (!samples.has(a) || !samples.has(b)) throw new Error(`PIPELINE_COMPARE ${compared}: both must be in PIPELINE_VARIANTS`);
  const diff = (field) => median(pairedBy(samples, a, b, (s, o) => s[field] - o[field]));
  console.log(`${a} − ${b}, paired: CPU ${diff('cpu').toFixed(1)} µs/req, GC ${diff('gc').toFixed(1)} µs/req`);
}
if (PAIRS > 1) {
  // Each process's own figure (its median over rounds, paired with the first variant's process of the same pair): the spread between processes.
  console.log(`\nper process, CPU µs/req − ${first}'s of the same pair (median over rounds):`);
  for (const { name } of VARIANTS.slice(1)) {
    const perPair = Array.from({ length: PAIRS }, (_, pair) => {
      const base = samples.get(first).filter((b) => b.pair === pair);
      return median(samples.get(name).filter((s) => s.pair === pair).map((s) => s.cpu - base.find((b) => b.round === s.round).cpu));
    });
    console.log(`  ${name}: ${perPair.map((x) => x.toFixed(1)).join(', ')}; mean ${(perPair.reduce((a, b) => a + b, 0) / PAIRS).toFixed(1)}`);
  }
}
if (process.env.BENCH_CPU_PROFILE) guardShares();
console.log(`\n${os.cpus()[0]?.model}, ${CORES} cores, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
process.exit(0);

/**
 * With BENCH_CPU_PROFILE=dir: each server's guard share (bench/guard-profile.mjs), from the profiles
 * this run wrote (its timed blocks only: rounds × block requests a process), per process and as a
 * mean, and a − b of those means for PIPELINE_COMPARE. Needs a process per variant (not
 * PIPELINE_SHARED) and one mode per variant, so a profile names its variant.
 */
function guardShares() {
  const dir = process.env.BENCH_CPU_PROFILE;
  const byVariant = new Map();
  for (const v of VARIANTS) byVariant.set(v.variant, [...(byVariant.get(v.variant) ?? []), v.name]);
  if (SHARED || [...byVariant.values()].some((names) => names.length > 1)) {
    console.log('\nguard share: needs a process per variant and one mode per variant (no PIPELINE_SHARED)');
    return;
  }
  const means = new Map();
  console.log(`\nthe guard's own CPU, µs/req per process (its canActivate frame: synchronous work, GC left out; bench/guard-profile.mjs), busy µs/req beside it:`);
  for (const { variant, name } of VARIANTS) {
    const files = readdirSync(dir).filter((f) => f.startsWith(`${variant}-`) && /^\d+\.cpuprofile$/.test(f.slice(variant.length + 1)) && statSync(`${dir}/${f}`).mtimeMs >= runStartedMs);
    const shares = files.map((f) => guardTimeOf(`${dir}/${f}`, ROUNDS * BLOCK));
    if (shares.length === 0) continue;
    const mean = shares.reduce((sum, s) => sum + s.guard, 0) / shares.length;
    means.set(name, mean);
    console.log(`  ${name}: ${shares.map((s) => s.guard.toFixed(1)).join(', ')}; mean ${mean.toFixed(1)} (busy ${shares.map((s) => s.busy.toFixed(0)).join(', ')})`);
  }
  for (const compared of process.env.PIPELINE_COMPARE?.split(',').filter(Boolean) ?? []) {
    const [a, b] = compared.split('/');
    if (means.has(a) && means.has(b)) console.log(`  ${a} − ${b}, guard share: ${(means.get(a) - means.get(b)).toFixed(1)} µs/req`);
  }
}
