// Cost of a cache-hit TokenExchangeService.exchange() call (issue: exchange; not a test).
// Runs against the built package (npm run build) and a local TestZone on loopback.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { KeycardModule, TokenExchangeService } from '../dist/index.js';
import { TestZone } from '../dist/testing/index.js';

const R = 'https://api.example.com';
const ITERATIONS = Number(process.env.ITERATIONS ?? 200_000);
const zone = await TestZone.start({
  audience: 'https://agent.example.com',
  resources: { [R]: ['read'] },
  clients: [{ clientId: 'agent', clientSecret: 'bench-secret' }],
});
class BenchModule {}
Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: 'https://agent.example.com', clientCredentials: { clientId: 'agent', clientSecret: 'bench-secret' } })] })(BenchModule);
const context = await NestFactory.createApplicationContext(BenchModule, { logger: false });
const service = context.get(TokenExchangeService);
const request = { subjectToken: zone.issueToken({ sub: 'alice' }), resource: R, scope: 'read' };
await service.exchange(request); // the one POST; everything after is a cache hit

const samples = new Float64Array(ITERATIONS);
for (let i = 0; i < 20_000; i++) await service.exchange(request); // warm-up
for (let i = 0; i < ITERATIONS; i++) {
  const start = process.hrtime.bigint();
  await service.exchange(request);
  samples[i] = Number(process.hrtime.bigint() - start) / 1000;
}
samples.sort();
const pct = (p) => samples[Math.min(samples.length - 1, Math.floor(samples.length * p))].toFixed(2);
console.log(`cache-hit exchange(): p50 ${pct(0.5)} µs, p90 ${pct(0.9)} µs, p99 ${pct(0.99)} µs over ${ITERATIONS} calls; token endpoint POSTs: ${zone.counts.token} (Node ${process.version})`);
await context.close();
await zone.stop();
