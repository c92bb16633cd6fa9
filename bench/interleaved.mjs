// The interleaved driver of `npm run bench` (its second section) and `npm run bench:pipeline-ab`:
// long-lived `bench/server.mjs` processes pinned to core 0, kept warm, driven in turn, block after
// block, over keep-alive sockets that stay open (no connection set-up in the figures). Each block
// reads the server's own CPU time (`process.cpuUsage`) before and after, so a slow period of the
// machine (10–30 s on this VM, during which every process reads far more CPU per request) moves every
// variant of the round it falls in together, and differences paired within a round cancel it.
// `npm run bench`'s first section runs each variant in its own process, one after another, 6 s each:
// a slow period there lands on one variant of a round and not on its pair.
//
// The caller pins itself (core 1) and owns the zone; this module starts and ends the servers.
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

export const CONNECTIONS = 50;
const STALL_MS = 30_000;
const CORES = os.cpus().length;

/** `variant:mode,…` (modes none, single, fresh; `single` when left out) as `{ variant, mode, name }`. */
export function parseVariants(spec) {
  return spec.split(',').filter(Boolean).map((v) => {
    const [variant, mode = 'single'] = v.split(':');
    return { variant, mode, name: `${variant}:${mode}` };
  });
}

/** The bench query of bench/server.mjs's `graphql-*` variants, as a JSON body. */
const GRAPHQL_BODY = JSON.stringify({ query: '{ data { id name } }' });

/**
 * The bytes of one request with `token` (none for `undefined`): GET /api/data, or for a `graphql-*`
 * variant POST /graphql with the bench query (a JSON body, as Apollo's CSRF rule wants it).
 */
const requestBytes = (token, graphql) => {
  const authorization = token === undefined ? '' : `Authorization: Bearer ${token}\r\n`;
  const head = graphql
    ? `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(GRAPHQL_BODY)}\r\n`
    : 'GET /api/data HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n';
  return Buffer.from(`${head}${authorization}\r\n${graphql ? GRAPHQL_BODY : ''}`);
};

const isGraphql = (variant) => variant.startsWith('graphql-');

/** Starts `node bench/server.mjs <variant> <issuer> <audience>` on core 0; resolves with its ports once ready. */
function startServer({ variant, issuer, audience, started }) {
  const args = [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), 'bench/server.mjs', variant, issuer, audience];
  const [cmd, cmdArgs] = CORES > 1 ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args];
  const env = { ...process.env, BENCH_KEEP_ALIVE_MS: String(3_600_000) };
  const child = spawn(cmd, cmdArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env });
  started.push(child);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    // A server that dies before it is ready (a bad BENCH_BEFORE_DIST, a build error) ends the run instead of a wait forever.
    const died = (code, signal) => reject(new Error(`bench/server.mjs ${variant} exited before it was ready (${signal ?? `code ${code}`})`));
    child.once('exit', died);
    child.once('message', (m) => {
      child.off('exit', died);
      resolve({ child, ports: m.ports });
    });
  });
}

const ask = (child, message) => new Promise((resolve) => {
  child.once('message', resolve);
  child.send(message);
});

/**
 * CONNECTIONS keep-alive sockets to `port`; `run(n, next)` sends n requests (one at a time per socket,
 * `next()` giving each one's bytes) and resolves with the count of each status when every answer is
 * in. An answer is complete when its body (Content-Length) is: the bench route answers small JSON,
 * never chunked.
 */
async function client(port) {
  const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, () => new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
    socket.setNoDelay(true);
  })));
  let closed = 0;
  for (const socket of sockets) socket.once('close', () => closed++);
  let statusCounts = {};
  const run = (n, next) => new Promise((resolve, reject) => {
    let sent = 0;
    let done = 0;
    statusCounts = {};
    // A block that stops being answered ends the run with what came back, instead of a wait forever.
    let lastDone = -1;
    const watchdog = setInterval(() => {
      if (done === lastDone) reject(new Error(`port ${port}: ${done} of ${n} answers, none for ${STALL_MS / 1000} s (${JSON.stringify(statusCounts)}, ${closed} sockets closed by the server)`));
      lastDone = done;
    }, STALL_MS);
    for (const socket of sockets) {
      let buffered = Buffer.alloc(0);
      const send = () => {
        if (sent >= n) return;
        sent++;
        socket.write(next());
      };
      socket.removeAllListeners('data');
      socket.on('data', (chunk) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        for (;;) {
          const end = buffered.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buffered.subarray(0, end).toString('latin1');
          const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length < end + 4 + length) return;
          const status = head.slice(9, 12);
          statusCounts[status] = (statusCounts[status] ?? 0) + 1;
          buffered = buffered.subarray(end + 4 + length);
          done++;
          if (done === n) {
            clearInterval(watchdog);
            resolve({ ...statusCounts });
          }
          else send();
        }
      });
      send();
    }
  });
  return { run, close: () => sockets.forEach((s) => s.destroy()) };
}

/**
 * The servers of one round, process after process: the blocks a paired figure compares (same round,
 * same process) are driven back to back, seconds apart rather than the whole round apart, so a slow
 * period of the machine (10–30 s) falls on both sides of more of them. Within a process the variants
 * turn every round and run backwards every other round, so none always follows the same one; the
 * processes take turns in the same way.
 */
function roundOrder(servers, round, pairs) {
  const turn = (xs) => {
    const turned = xs.map((_, i) => xs[(i + round) % xs.length]);
    return round % 2 ? turned.reverse() : turned;
  };
  return turn(Array.from({ length: pairs }, (_, pair) => turn(servers.filter((s) => s.pair === pair))));
}

/**
 * Measures `variants` in alternating blocks and returns every block's sample by variant name:
 * `Map<name, { round, pair, at, cpu, gc }[]>` (when the block began, s after the first; server CPU
 * and GC pause µs per request).
 *
 * @param options.variants `{ variant, mode, name }[]` (parseVariants); the first is the one others are read against.
 * @param options.rounds rounds; every server is driven once per round, in an order that turns each round.
 * @param options.block requests per block.
 * @param options.pairs processes of each variant (or, shared, processes serving every variant), alternated.
 * @param options.shared every variant an app of one process (per pair), sharing the JIT's work on Nest, Express and Node.
 * @param options.issuer the zone's URL; `options.audience` the resource.
 * @param options.single one token (mode single: cache hits); `options.fresh` a pool larger than every
 *   verified-token cache of the run (mode fresh: each app walks it on its own cursor, so every token
 *   it is sent is one it has not seen for `fresh.length` requests).
 * @param options.warmup requests of its own kind each server gets before the rounds (default: the
 *   fresh pool's length, so every variant is warmed alike), then two blocks.
 * @param options.log progress lines (default: none).
 */
export async function interleaved({ variants, rounds, block, pairs, shared, issuer, audience, single, fresh = [], warmup = fresh.length || 12_000, log = () => {} }) {
  if (variants.some((v) => v.mode === 'fresh') && fresh.length === 0) throw new Error('mode fresh needs a pool of fresh tokens');
  const bytesOf = new Map(
    [false, true]
      .filter((graphql) => variants.some((v) => isGraphql(v.variant) === graphql))
      .map((graphql) => [graphql, { none: requestBytes(undefined, graphql), single: requestBytes(single, graphql), fresh: fresh.map((t) => requestBytes(t, graphql)) }]),
  );
  const nextOf = (s) => {
    const bytes = bytesOf.get(isGraphql(s.variant));
    if (s.mode === 'none') return () => bytes.none;
    if (s.mode === 'single') return () => bytes.single;
    return () => bytes.fresh[s.cursor++ % fresh.length];
  };

  /** Every server started, ended with this run whatever the way it ends (a failed start or a stall included). */
  const started = [];
  const endAll = () => started.forEach((child) => child.kill());
  process.on('exit', endAll);
  try {
    const servers = [];
    for (let pair = 0; pair < pairs; pair++) {
      const groups = shared ? [variants] : variants.map((v) => [v]);
      for (const group of groups) {
        const { child, ports } = await startServer({ variant: group.map((v) => v.variant).join('+'), issuer, audience, started });
        for (const [i, v] of group.entries()) servers.push({ ...v, pair, child, cursor: 0, http: await client(ports[i]) });
      }
    }
    log(`  ${started.length} server process(es) up; warming each variant (${warmup} requests of its own kind, then 2 blocks)`);
    for (const s of servers) {
      s.next = nextOf(s);
      await s.http.run(warmup, s.next);
      await s.http.run(2 * block, s.next);
    }

    const samples = new Map(variants.map((v) => [v.name, []]));
    const startedAt = performance.now();
    for (let round = 0; round < rounds; round++) {
      for (const order of roundOrder(servers, round, pairs)) {
        for (const s of order) {
          const at = (performance.now() - startedAt) / 1000;
          await ask(s.child, 'cpu-start');
          const statuses = await s.http.run(block, s.next);
          const { cpuMicros, gc } = await ask(s.child, 'cpu-stop');
          if (Object.keys(statuses).some((status) => status !== '200')) log(`  ${s.name}: answers ${JSON.stringify(statuses)}`);
          samples.get(s.name).push({ round, pair: s.pair, at, cpu: cpuMicros / block, gc: (gc.ms * 1000) / block });
        }
      }
      log(`  round ${round + 1}/${rounds} done`);
    }
    for (const s of servers) s.http.close();
    await Promise.all([...new Set(servers.map((s) => s.child))].map((child) => {
      child.send('exit');
      return new Promise((resolve) => child.once('exit', resolve));
    }));
    return samples;
  } finally {
    endAll();
    process.off('exit', endAll);
  }
}

export const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/**
 * `f(a's sample, b's sample)` for every block of `a` whose round and process (pair) `b` also has: the
 * values a paired figure is the median of. E.g. `(x, y) => x.cpu - y.cpu`.
 */
export function pairedBy(samples, a, b, f) {
  const others = samples.get(b);
  return samples.get(a).flatMap((s) => {
    const o = others.find((t) => t.round === s.round && t.pair === s.pair);
    return o === undefined ? [] : [f(s, o)];
  });
}

/**
 * The median, the least and most of `values`, and their middle half (`lower`…`upper` quartile): on a
 * shared machine the least and most are the blocks a slow period hit on one side only.
 */
export const spread = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.round(q * (sorted.length - 1))];
  return { median: median(values), least: sorted[0], most: sorted.at(-1), lower: at(0.25), upper: at(0.75) };
};
