// node bench/fresh-tokens.mjs (after `npm run build`): Keycard's token shape as a server sees it, for
// the guard's verified-token cache (issue 24). Each variant runs in a process of its own, so one
// variant's retained cache entries are collected in its own heap only; each call builds a new
// `Authorization` header string, as Node's HTTP parser does per request (bench:micro reuses its
// token strings). 12 000 tokens walked in order, none again before 12 000 calls: every call is a
// token new to the guard. Per variant: CPU µs per call over 36 000 calls after 24 000 of warm-up,
// heap used at the end. Variants: `0` and `10000` (verifiedTokenCacheSize), and with
// FRESH_BEFORE_DIST=/abs/path/to/an/older/dist the same sizes built from it (`before:0`,
// `before:10000`), interleaved over FRESH_ROUNDS rounds (default 3), medians reported.
import 'reflect-metadata';
import { spawn } from 'node:child_process';

const R = 'https://api.example.com';
const before = process.env.FRESH_BEFORE_DIST;

if (process.argv[2] !== 'child') {
  const { TestZone } = await import('../dist/testing/index.js');
  const { loadavg } = await import('node:os');
  const zone = await TestZone.start({ audience: R });
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const tokens = Array.from({ length: 12_000 }, (_, i) => zone.issueToken({ scope: 'read', sub: `user-${i}`, client_id: `agent-${i % 100}`, exp }));
  const variants = ['0', '10000', ...(before ? ['before:0', 'before:10000'] : [])];
  const cpu = Object.fromEntries(variants.map((v) => [v, []]));
  for (let round = 0; round < Number(process.env.FRESH_ROUNDS ?? 3); round++) {
    for (const variant of round % 2 ? [...variants].reverse() : variants) {
      const child = spawn(process.execPath, [new URL(import.meta.url).pathname, 'child', variant, zone.issuer], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const result = await new Promise((resolve) => child.on('message', (m) => (m === 'ready' ? child.send(tokens) : resolve(m))));
      await new Promise((resolve) => child.once('exit', resolve));
      cpu[variant].push(result.cpu);
      console.log(`  round ${round + 1}, cache ${variant.padEnd(13)} ${result.cpu.toFixed(2).padStart(7)} µs CPU/call, heap ${result.heapMB.toFixed(0)} MB`);
    }
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(`\n| verifiedTokenCacheSize | CPU µs per new token (median) |\n|---|---:|`);
  for (const variant of variants) console.log(`| ${variant} | ${median(cpu[variant]).toFixed(2)} |`);
  console.log(`\nNode ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  await zone.stop();
  process.exit(0);
}

const [, , , variant, zoneUrl] = process.argv;
const { Module } = await import('@nestjs/common');
const { NestFactory } = await import('@nestjs/core');
const dist = variant.startsWith('before:') ? before : '../dist';
const { KeycardGuard, KeycardModule, RequireScopes } = await import(`${dist}/index.js`);
class Controller_ { list() {} }
RequireScopes('read')(Controller_.prototype, 'list', Object.getOwnPropertyDescriptor(Controller_.prototype, 'list'));
class M {}
Module({ imports: [KeycardModule.forRoot({ zoneUrl, resource: R, verifiedTokenCacheSize: Number(variant.replace('before:', '')), logger: { log() {}, warn() {}, error() {} } })], providers: [Controller_] })(M);
const app = await NestFactory.create(M, { logger: false });
await app.init();
const guard = app.get(KeycardGuard);
const refuse = () => {
  throw new Error('the guard refused');
};
const response = { set: refuse, setHeader: refuse, header: refuse };
process.send('ready');
const tokens = await new Promise((resolve) => process.once('message', resolve));
let next = 0;
const call = () => {
  // A new flat string per call, as the HTTP parser makes one per request.
  const header = `Bearer ${tokens[next++ % tokens.length]}`.split('').join('');
  const request = { method: 'GET', url: '/api/data', headers: { host: 'api.example.com', authorization: header }, rawHeaders: ['Host', 'api.example.com', 'Authorization', header], socket: {} };
  return guard.canActivate({ getType: () => 'http', getHandler: () => Controller_.prototype.list, getClass: () => Controller_, switchToHttp: () => ({ getRequest: () => request, getResponse: () => response }) });
};
const run = async (calls) => {
  for (let i = 0; i < calls; i++) {
    const admitted = call();
    if ((admitted instanceof Promise ? await admitted : admitted) !== true) throw new Error('not admitted');
  }
};
await run(24_000);
const start = process.cpuUsage();
await run(36_000);
const used = process.cpuUsage(start);
process.send({ cpu: (used.user + used.system) / 36_000, heapMB: process.memoryUsage().heapUsed / 1048576 }, () => process.exit(0));
