/**
 * `npm start`: the sample API protected by nestjs-keycard. Without KEYCARD_ZONE_URL it starts a
 * local development zone (TestZone, loopback only) and walks through the agent story; with it, the
 * API trusts that real zone. `npm run demo` runs the tour and exits with its verdict.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { TestZone } from '../lib/testing/index.js';
import { AppModule } from './app.module.js';
import { runTour } from './tour.js';

const demoOnly = process.argv.includes('--demo');
const port = Number(process.env.PORT ?? (demoOnly ? 0 : 8080));

async function start(): Promise<void> {
  const zone = process.env.KEYCARD_ZONE_URL ? undefined : await TestZone.start();
  const zoneUrl = process.env.KEYCARD_ZONE_URL ?? zone!.issuer;
  // The resource must be known before the app listens; with PORT=0 (demo) it is fixed after listen.
  const listenPort = port === 0 ? await freePort() : port;
  const resource = process.env.KEYCARD_RESOURCE ?? `http://localhost:${listenPort}`;
  const app = await NestFactory.create(AppModule.register({ zoneUrl, resource }), { logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  await app.listen(listenPort, '127.0.0.1');
  const api = `http://127.0.0.1:${listenPort}`;
  console.log(`\nnestjs-keycard sample API on ${api} (resource ${resource})`);
  if (!zone) {
    console.log(`Trusting the zone ${zoneUrl}. Get a token there and call ${api}/api/data.`);
    return;
  }
  console.log(`Local development zone (TestZone, not for production) on ${zone.issuer}\n`);
  const steps = await runTour(api, zone, resource);
  for (const [i, s] of steps.entries()) {
    console.log(`${s.ok ? '✔' : '✘'} ${i + 1}. ${s.title}\n    ${s.detail.slice(0, 400)}`);
  }
  const failed = steps.filter((s) => !s.ok).length;
  console.log(`\nTour: ${steps.length - failed} of ${steps.length} steps answered as expected`);
  if (demoOnly) {
    await app.close();
    await zone.stop();
    process.exitCode = failed === 0 ? 0 : 1;
    return;
  }
  const token = zone.issueToken({ aud: resource, client_id: 'agent-a', sub: 'alice', scope: 'read write admin' }, {});
  console.log(`\nTry it (token valid 5 minutes):\n  curl -i ${api}/api/data\n  curl -i -H "Authorization: Bearer ${token}" ${api}/api/data\n\nCtrl-C to stop.`);
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
}

start().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
