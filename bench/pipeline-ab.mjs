// npm run bench:pipeline-ab: server CPU per request through the WHOLE Nest HTTP pipeline (Express,
// router, guard, handler, JSON answer; for `graphql-*` variants Apollo's POST /graphql with the
// query `{ data { id name } }`), several variants side by side, in alternating blocks.
//
// `npm run bench` measures each variant in its own 6 s run and is noisy (±0.05 of baseline on a
// shared machine). Here every variant is one long-lived `bench/server.mjs` process (pinned to core
// 0, as in `npm run bench`), kept warm, and driven in turn, block after block, over keep-alive
// sockets that stay open (no connection set-up in the figures): each block reads the server's own
// CPU time (`process.cpuUsage`) before and after, so a round the machine slowed down moves every
// variant of that round together, and the report is the median over rounds of each variant's CPU per
// request minus the first variant's in the same round.
//
// PIPELINE_VARIANTS=variant:mode,… (default `baseline:none,noop-guard:single,keycard:single`);
// variants as bench/server.mjs names them (`keycard-before` needs BENCH_BEFORE_DIST, a dist inside
// this tree, e.g. `.bench-before`); modes: none, single (one token: cache hits), fresh (a token the
// server has not seen on every request: 12 000 RS256 tokens cycled past a 10 000-entry cache).
// PIPELINE_ROUNDS (default 30), PIPELINE_BLOCK requests per block (default 1 500), PIPELINE_PAIRS
// (default 1): how many processes of each variant, alternated, so one process's luck (JIT, heap
// layout) is not the variant's figure. BENCH_NODE_ARGS goes to the servers (--cpu-prof, --heap-prof).
// PIPELINE_COMPARE=a/b,… prints a − b paired within rounds (e.g. `graphql-keycard:fresh/graphql-ideal:fresh`).
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { TestZone } from '../dist/testing/index.js';

const AUDIENCE = 'https://api.example.com';
const CONNECTIONS = 50;
const ROUNDS = Number(process.env.PIPELINE_ROUNDS ?? 30);
const BLOCK = Number(process.env.PIPELINE_BLOCK ?? 1500);
const PAIRS = Number(process.env.PIPELINE_PAIRS ?? 1);
/** PIPELINE_SHARED=1: every variant an app of one process (per pair), so they share the JIT's work on Nest, Express and Node. */
const SHARED = process.env.PIPELINE_SHARED === '1';
const FRESH = 12_000;
const STALL_MS = 30_000;
const VARIANTS = (process.env.PIPELINE_VARIANTS ?? 'baseline:none,noop-guard:single,keycard:single').split(',').map((v) => {
  const [variant, mode = 'single'] = v.split(':');
  return { variant, mode, name: `${variant}:${mode}` };
});
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
/** The request bytes of each mode, for HTTP (`false`) and GraphQL (`true`) variants; built only for the kinds the run has. */
const bytesOf = new Map(
  [false, true]
    .filter((graphql) => VARIANTS.some((v) => v.variant.startsWith('graphql-') === graphql))
    .map((graphql) => [graphql, { none: requestBytes(undefined, graphql), single: requestBytes(single, graphql), fresh: fresh.map((t) => requestBytes(t, graphql)) }]),
);

/** Every server started, ended with this process whatever the way it ends (a failed start included). */
const started = [];
process.on('exit', () => {
  for (const child of started) child.kill();
});

function startServer(variant) {
  const args = [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), 'bench/server.mjs', variant, zone.issuer, AUDIENCE];
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
      resolve({ child, port: m.port, ports: m.ports });
    });
  });
}

const ask = (child, message) => new Promise((resolve) => {
  child.once('message', resolve);
  child.send(message);
});

/**
 * CONNECTIONS keep-alive sockets to `port`; `run(n, next)` sends n requests (one at a time per socket,
 * `next()` giving each one's bytes) and resolves when every answer is in. An answer is complete when
 * its body (Content-Length) is: the bench route answers small JSON, never chunked.
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

/** Each app walks the pool on its own cursor: every token it is sent is one it has not seen for 12 000 requests. */
const cursors = new Map();
const nextOf = (mode, app) => {
  const bytes = bytesOf.get(app.variant.startsWith('graphql-'));
  if (mode === 'none') return () => bytes.none;
  if (mode === 'single') return () => bytes.single;
  return () => {
    const cursor = cursors.get(app) ?? 0;
    cursors.set(app, cursor + 1);
    return bytes.fresh[cursor % FRESH];
  };
};

/** One server per variant and pair, warmed with two blocks (and, for fresh tokens, a walk of the whole pool). */
const servers = [];
for (let pair = 0; pair < PAIRS; pair++) {
  if (SHARED) {
    const { child, ports } = await startServer(VARIANTS.map((v) => v.variant).join('+'));
    for (const [i, v] of VARIANTS.entries()) servers.push({ ...v, pair, child, http: await client(ports[i]) });
  } else {
    for (const v of VARIANTS) {
      const { child, port } = await startServer(v.variant);
      servers.push({ ...v, pair, child, http: await client(port) });
    }
  }
}
for (const s of servers.slice(-VARIANTS.length * PAIRS)) {
  if (s.mode === 'fresh') await s.http.run(FRESH, nextOf('fresh', s));
  await s.http.run(2 * BLOCK, nextOf(s.mode, s));
}

const samples = new Map(VARIANTS.map((v) => [v.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  // A different order every round, so no variant always runs right after the same one.
  const order = servers.map((_, i) => servers[(i + round) % servers.length]);
  if (round % 2) order.reverse();
  for (const s of order) {
    await ask(s.child, 'cpu-start');
    const statuses = await s.http.run(BLOCK, nextOf(s.mode, s));
    const { cpuMicros, gc } = await ask(s.child, 'cpu-stop');
    if (Object.keys(statuses).some((status) => status !== '200')) console.warn(`  ${s.name}: answers ${JSON.stringify(statuses)}`);
    samples.get(s.name).push({ round, pair: s.pair, cpu: cpuMicros / BLOCK, gc: (gc.ms * 1000) / BLOCK });
  }
}
for (const s of servers) s.http.close();
await Promise.all([...new Set(servers.map((s) => s.child))].map((child) => {
  child.send('exit');
  return new Promise((resolve) => child.once('exit', resolve));
}));
await zone.stop();

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const first = VARIANTS[0].name;
const pairedOver = (name, field) => {
  const base = samples.get(first);
  return median(samples.get(name).map((s) => s[field] - base.find((b) => b.round === s.round && b.pair === s.pair)[field]));
};
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
  const diff = (field) => median(samples.get(a).map((s) => s[field] - samples.get(b).find((o) => o.round === s.round && o.pair === s.pair)[field]));
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
console.log(`\n${os.cpus()[0]?.model}, ${CORES} cores, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
process.exit(0);
