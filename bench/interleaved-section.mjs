// The interleaved section of `npm run bench` (issue 24): the rows its goals are read from, measured
// by bench/interleaved.mjs (long-lived servers driven in turn in short blocks, CPU read per block),
// and the goal lines, each with the least and most of its paired blocks.
//
// Settings (measured on this 2-core VM, see docs/operations.md#two-instruments): every variant an app of one
// process, 4 such processes, 32 rounds of 500 requests per variant (about 10 minutes). Until
// 2026-12-07 it was 2 processes: one process's luck (what the JIT made of the module's code, its
// heap layout) moves a variant by 10–40 µs against the same build in another process, every block
// of it alike, so the 64 blocks of two processes were two draws of that luck; four processes
// average it over four. The cold-path line prints each process's own figure. Override with
// BENCH_INTERLEAVED_SHARED=0|1, BENCH_INTERLEAVED_PAIRS, BENCH_INTERLEAVED_ROUNDS, BENCH_INTERLEAVED_BLOCK.
import { CONNECTIONS, interleaved, median, pairedBy, parseVariants, spread } from './interleaved.mjs';

/** The section's layout; `--quick`: one process, 8 rounds. */
const settingsOf = (quick) => ({
  shared: (process.env.BENCH_INTERLEAVED_SHARED ?? '1') === '1',
  pairs: Number(process.env.BENCH_INTERLEAVED_PAIRS ?? (quick ? 1 : 4)),
  rounds: Number(process.env.BENCH_INTERLEAVED_ROUNDS ?? (quick ? 8 : 32)),
  block: Number(process.env.BENCH_INTERLEAVED_BLOCK ?? 500),
});

/** Issue 24's rows; with BENCH_BEFORE_DIST the build before on both paths too. */
const VARIANTS = parseVariants([
  'baseline:none,noop-guard:single,keycard:single,fast-jwt:single,ideal:fresh,keycard:fresh,fast-jwt:fresh',
  'graphql-baseline:none,graphql-keycard:single,graphql-ideal:fresh,graphql-keycard:fresh',
  ...(process.env.BENCH_BEFORE_DIST ? ['keycard-before:single,keycard-before:fresh'] : []),
].join(','));

const baselineOf = (name) => (name.startsWith('graphql-') ? 'graphql-baseline:none' : 'baseline:none');
const signed = (x, digits = 1) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;
const range = ({ least, most }, digits = 1, sign = signed) => `${sign(least, digits)}…${sign(most, digits)}`;
/** A goal line's spread: the least…most of its blocks and their middle half. */
const spreadText = (figures, digits = 1, sign = signed) => `blocks ${range(figures, digits, sign)}, middle half ${sign(figures.lower, digits)}…${sign(figures.upper, digits)}`;
const plain = (x, digits) => x.toFixed(digits);

/** a − b in server CPU µs/req, paired within blocks of the same round and process. */
const gap = (samples, a, b) => spread(pairedBy(samples, a, b, (x, y) => x.cpu - y.cpu));
/** Throughput × its baseline: baseline CPU ÷ the variant's, paired (a server saturated on one core serves 1 / CPU per request). */
const ratio = (samples, a) => spread(pairedBy(samples, a, baselineOf(a), (x, y) => y.cpu / x.cpu));
/** a − b in server CPU µs/req, the median of each process's own paired blocks (process luck, side by side). */
const perProcess = (samples, a, b) => {
  const pairs = [...new Set(samples.get(a).map((s) => s.pair))].sort((x, y) => x - y);
  const inPair = (name, pair) => [name, samples.get(name).filter((s) => s.pair === pair)];
  return pairs.map((pair) => median(pairedBy(new Map([inPair(a, pair), inPair(b, pair)]), a, b, (x, y) => x.cpu - y.cpu)));
};
/** a's throughput ratio − b's, paired. */
const ratioGap = (samples, a, b) => {
  const base = samples.get(baselineOf(a));
  return spread(pairedBy(samples, a, b, (x, y) => {
    const z = base.find((s) => s.round === x.round && s.pair === x.pair).cpu;
    return z / x.cpu - z / y.cpu;
  }));
};

/** The goal lines, each `{ label, value, goal?, met? }`, and the figures they print for results/latest.json. */
function goals(samples) {
  const has = (...names) => names.every((n) => samples.has(n));
  const lines = [];
  const cold = gap(samples, 'keycard:fresh', 'ideal:fresh');
  const coldByProcess = perProcess(samples, 'keycard:fresh', 'ideal:fresh');
  const coldRatio = ratioGap(samples, 'keycard:fresh', 'ideal:fresh');
  const hit = ratio(samples, 'keycard:single');
  const floor = ratio(samples, 'noop-guard:single');
  lines.push(
    { label: 'cold path, RS256 HTTP: keycard − ideal', figures: { ...cold, perProcess: coldByProcess }, text: `${signed(cold.median)} µs server CPU/req (${spreadText(cold)}; each process's own: ${coldByProcess.map((x) => signed(x)).join(', ')})`, goal: '≤ +10 µs', met: cold.median <= 10 },
    { label: 'cold path, RS256 HTTP: throughput × baseline, keycard − ideal', figures: coldRatio, text: `${median(pairedBy(samples, 'keycard:fresh', 'baseline:none', (x, y) => y.cpu / x.cpu)).toFixed(3)} vs ${median(pairedBy(samples, 'ideal:fresh', 'baseline:none', (x, y) => y.cpu / x.cpu)).toFixed(3)}: ${signed(coldRatio.median, 3)} (${spreadText(coldRatio, 3)})`, goal: '≥ −0.03', met: coldRatio.median >= -0.03 },
    { label: 'cache hit, HTTP: keycard throughput × baseline', figures: hit, text: `${hit.median.toFixed(3)} (${spreadText(hit, 3, plain)}); the allow-all guard ${floor.median.toFixed(3)} (${spreadText(floor, 3, plain)})`, goal: '≥ 0.92', met: hit.median >= 0.92 },
  );
  for (const [path, a, b] of [['cache hit, HTTP', 'keycard:single', 'fast-jwt:single'], ['cold path, RS256 HTTP', 'keycard:fresh', 'fast-jwt:fresh']]) {
    const g = gap(samples, a, b);
    lines.push({ label: `${path}: keycard − fast-jwt`, figures: g, text: `${signed(g.median)} µs server CPU/req (${spreadText(g)})`, goal: '< 0 (ahead)', met: g.median < 0 });
  }
  const gqlCold = gap(samples, 'graphql-keycard:fresh', 'graphql-ideal:fresh');
  const gqlHit = ratio(samples, 'graphql-keycard:single');
  lines.push(
    { label: 'cold path, RS256 GraphQL: keycard − ideal', figures: gqlCold, text: `${signed(gqlCold.median)} µs server CPU/req (${spreadText(gqlCold)}); HTTP ${signed(cold.median)}` },
    { label: 'cache hit, GraphQL: keycard throughput × GraphQL baseline', figures: gqlHit, text: `${gqlHit.median.toFixed(3)} (${spreadText(gqlHit, 3, plain)}); HTTP ${hit.median.toFixed(3)}` },
  );
  if (has('keycard-before:fresh')) {
    for (const [path, a, b] of [['cache hit, HTTP', 'keycard:single', 'keycard-before:single'], ['cold path, RS256 HTTP', 'keycard:fresh', 'keycard-before:fresh']]) {
      const g = gap(samples, a, b);
      lines.push({ label: `${path}: keycard − keycard before`, figures: g, text: `${signed(g.median)} µs server CPU/req (${spreadText(g)})` });
    }
  }
  return lines;
}

/**
 * Runs the section and prints its table and goal lines; returns what results/latest.json keeps
 * (settings, every block's sample, the goal figures).
 * @param options `{ issuer, audience, single, fresh, quick }`: the run's zone, its one token, its fresh
 *   RS256 pool (12 000, past every 10 000-entry cache), and whether `--quick` was asked.
 */
export async function interleavedSection({ issuer, audience, single, fresh, quick = false }) {
  const settings = settingsOf(quick);
  const { shared, pairs, rounds, block } = settings;
  const layout = `${pairs} process(es) ${shared ? 'each serving every variant as its own app' : 'per variant'}, ${rounds} rounds × ${block} requests per variant, ${CONNECTIONS} keep-alive connections`;
  console.log(`\ninterleaved section (issue 24's rows): ${layout}`);
  const startedAt = Date.now();
  const samples = await interleaved({ variants: VARIANTS, rounds, block, pairs, shared, issuer, audience, single, fresh, log: console.log });
  const seconds = (Date.now() - startedAt) / 1000;
  const blocks = rounds * pairs;
  console.log(`\nserver CPU per request, medians over ${blocks} blocks (${rounds} rounds × ${pairs} processes); paired = within the same round and process, (least…most) of those blocks; throughput × baseline = baseline CPU ÷ variant CPU, paired (a server saturated on its one pinned core serves 1 / CPU per request)\n`);
  console.log('| variant | CPU µs/req | − its baseline, paired | throughput × its baseline | GC µs/req |\n|---|---:|---:|---:|---:|');
  for (const { name } of VARIANTS) {
    const s = samples.get(name);
    const over = gap(samples, name, baselineOf(name));
    const r = ratio(samples, name);
    const isBase = name === baselineOf(name);
    console.log(`| ${name} | ${median(s.map((x) => x.cpu)).toFixed(1)} | ${isBase ? '' : `${signed(over.median)} (${range(over)})`} | ${isBase ? '1' : `${r.median.toFixed(3)} (${range(r, 3, plain)})`} | ${median(s.map((x) => x.gc)).toFixed(1)} |`);
  }
  const lines = goals(samples);
  console.log(`\nissue 24 goals, from the interleaved section (paired within rounds):`);
  for (const { label, text, goal, met } of lines) console.log(`${label}: ${text}${goal ? `  [goal ${goal}: ${met ? 'met' : 'NOT met'}]` : ''}`);
  console.log(`(interleaved section: ${Math.round(seconds)} s)`);
  return {
    settings: { ...settings, connections: CONNECTIONS, seconds },
    samples: Object.fromEntries(samples),
    goals: Object.fromEntries(lines.map(({ label, figures, goal, met }) => [label, { ...figures, goal, met }])),
  };
}
