// The same consumer check on NestJS 11, a CommonJS app: plain Node gives require() the ESM build
// (module-sync, require(esm)); every subpath loads.
require('reflect-metadata');
const { Controller, Get, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { KeycardModule, RequireScopes } = require('nestjs-keycard');
const { TestZone } = require('nestjs-keycard/testing');
for (const subpath of ['pkce', 'throttler', 'swagger', 'health', 'redis', 'telemetry']) {
  if (Object.keys(require(`nestjs-keycard/${subpath}`)).length === 0) throw new Error(`nestjs-keycard/${subpath} exports nothing`);
}
(async () => {
  const resource = 'https://api.example.com';
  const zone = await TestZone.start({ audience: resource });
  class C { data() { return { ok: true }; } }
  const d = Object.getOwnPropertyDescriptor(C.prototype, 'data');
  Get('data')(C.prototype, 'data', d); RequireScopes('read')(C.prototype, 'data', d); Controller()(C);
  class M {} Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource })], controllers: [C] })(M);
  const app = await NestFactory.create(M, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${app.getHttpServer().address().port}/data`;
  const a = await fetch(url); const b = await fetch(url, { headers: { authorization: `Bearer ${zone.issueToken({ scope: 'read' })}` } });
  console.log(`nest ${require('@nestjs/core/package.json').version} (CommonJS): anonymous → ${a.status}, with token → ${b.status}`);
  await app.close(); await zone.stop();
  if (a.status !== 401 || b.status !== 200) process.exit(1);
})().catch((e) => { console.error(e); process.exit(1); });
