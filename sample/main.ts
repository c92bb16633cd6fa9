/**
 * `npm start`: the sample API protected by nestjs-keycard, and a scripted tour of the agent story.
 *
 * Without KEYCARD_ZONE_URL it starts a local development zone (TestZone, loopback only, not for
 * production) with a demo user and two agents. With KEYCARD_ZONE_URL (and KEYCARD_CLIENT_ID /
 * KEYCARD_CLIENT_SECRET) it trusts that real Keycard zone, and the tour signs you in with your browser.
 * `npm run demo` runs the tour and exits with its verdict.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { TestZone } from '../lib/testing/index.js';
import { startAgent, type RunningAgent } from './agent.js';
import { AppModule } from './app.module.js';
import { DigestJob } from './digest.job.js';
import { freePort } from './free-port.js';
import { mcpStrategy } from './mcp.js';
import { NotesModule } from './notes.module.js';
import { runTour } from './tour.js';

const demo = process.argv.includes('--demo');
const port = Number(process.env.PORT ?? 8080);
const RATE_LIMIT = 5;
/** The Authorization value the local zone's SSF transmitter sends with each SET (docs/revocation.md). */
const LOCAL_SSF_AUTHORIZATION = 'Bearer local-ssf-receiver-secret';
const LOCAL_SECRETS = { 'agent-a': 'agent-a-local-secret', 'agent-b': 'agent-b-local-secret', 'sample-api': 'sample-api-local-secret' };

/**
 * Keeps audit lines for the tour, which shows them in its audit step; once the tour is over they
 * are printed as they come. Everything else goes to stderr.
 */
const auditLines: string[] = [];
let printAudit = false;
const logger = {
  log: (message: unknown) => {
    const line = String(message);
    if (line.startsWith('{"event":"keycard.audit"')) auditLines.push(line);
    if (printAudit) console.log(`[audit] ${line}`);
  },
  warn: (message: unknown) => (demo ? undefined : console.warn(`[keycard] ${String(message)}`)),
  error: (message: unknown) => console.error(`[keycard] ${String(message)}`),
};

async function main(): Promise<void> {
  const realZone = process.env.KEYCARD_ZONE_URL;
  const listenPort = demo && !process.env.PORT ? await freePort() : port;
  const resource = process.env.KEYCARD_RESOURCE ?? `http://localhost:${listenPort}`;
  const redirectUri = realZone ? 'http://localhost:8765/callback' : `http://127.0.0.1:${await freePort()}/callback`;
  const notesPort = Number(process.env.NOTES_PORT ?? (demo || !process.env.PORT ? await freePort() : port + 1));
  const notesResource = process.env.KEYCARD_NOTES_RESOURCE ?? `http://localhost:${notesPort}`;

  const zone = realZone
    ? undefined
    : await TestZone.start({
        resources: { [resource]: ['read', 'write', 'admin'], [notesResource]: ['notes:read'] },
        // Signs in with a password (`acr`); asked for `acr_values`, with the first of them (step-up).
        devUser: { sub: 'alice@example.com', name: 'Alice (local dev user)', acr: 'urn:kc:pwd' },
        clients: [
          { clientId: 'demo-cli', public: true, redirectUris: [redirectUri] },
          { clientId: 'agent-a', clientSecret: LOCAL_SECRETS['agent-a'] },
          { clientId: 'agent-b', clientSecret: LOCAL_SECRETS['agent-b'] },
          { clientId: 'sample-api', clientSecret: LOCAL_SECRETS['sample-api'] },
        ],
      });
  const zoneUrl = realZone ?? zone!.issuer;

  const clientId = process.env.KEYCARD_CLIENT_ID;
  const clientSecret = process.env.KEYCARD_CLIENT_SECRET;
  // The API's own client at the zone, for the grant (on the user's behalf) and the job (as itself).
  const service = realZone
    ? clientId && clientSecret ? { clientId, clientSecret } : undefined
    : { clientId: 'sample-api', clientSecret: LOCAL_SECRETS['sample-api'] };

  const notesApp = await NestFactory.create(NotesModule.register({ zoneUrl, resource: notesResource, logger }), { logger: ['error', 'warn'] });
  await notesApp.listen(notesPort, '127.0.0.1');
  const notes = { resource: notesResource, url: `http://localhost:${notesPort}` };

  const app = await NestFactory.create(
    AppModule.register({
      zoneUrl, resource, rateLimit: RATE_LIMIT, rateWindowMs: 10_000, logger, clientCredentials: service, notes: service ? notes : undefined,
      ssf: zone ? { audience: `${resource}/ssf`, push: { authorization: LOCAL_SSF_AUTHORIZATION } } : undefined,
    }),
    { logger: ['error', 'warn'] },
  );
  app.enableShutdownHooks();
  // The MCP server (tools in sample/mcp.ts), served at /mcp by a controller behind the guard.
  mcpStrategy.setHttpAdapter(app.getHttpAdapter());
  app.connectMicroservice({ strategy: mcpStrategy });
  await app.startAllMicroservices();
  await app.listen(listenPort, '127.0.0.1');
  const api = `http://localhost:${listenPort}`;

  console.log(`\nnestjs-keycard sample API on ${api}  (resource ${resource})`);
  console.log(`Upstream notes API on ${notes.url}  (resource ${notesResource})`);
  if (zone) {
    console.log(`LOCAL DEVELOPMENT ZONE (TestZone, for tests and demos only) on ${zone.issuer}`);
    console.log(`  dev user: alice@example.com (signed in without a password)`);
    console.log(`  clients:  demo-cli (public, PKCE login) · agent-a / agent-b (secrets ${LOCAL_SECRETS['agent-a']}, ${LOCAL_SECRETS['agent-b']})`);
    console.log(`            sample-api (the API itself, secret ${LOCAL_SECRETS['sample-api']})`);
  } else {
    console.log(`Trusting the Keycard zone ${zoneUrl}`);
  }

  if (realZone && (!clientId || !clientSecret)) {
    console.log('\nSet KEYCARD_CLIENT_ID and KEYCARD_CLIENT_SECRET to run the tour against this zone. The API keeps serving.');
    return;
  }
  const agents: RunningAgent[] = realZone
    ? [await startAgent(zoneUrl, clientId!, clientSecret!)]
    : [await startAgent(zoneUrl, 'agent-a', LOCAL_SECRETS['agent-a']), await startAgent(zoneUrl, 'agent-b', LOCAL_SECRETS['agent-b'])];

  console.log('\nThe agent tour:\n');
  const steps = await runTour({
    api,
    resource,
    loginClientId: realZone ? clientId! : 'demo-cli',
    loginClientSecret: realZone ? clientSecret : undefined,
    redirectUri,
    openBrowser: zone ? followRedirect : undefined,
    agentA: agents[0],
    agentB: agents[1],
    rateLimit: RATE_LIMIT,
    auditLines: () => auditLines,
    serviceClientId: service?.clientId,
    mcp: zone ? { url: `${api}/mcp`, clientId: 'demo-cli', redirectUri } : undefined,
    revokeAgent: zone
      ? async (agent) => {
          const transmitter = zone.ssfTransmitter({ audience: `${resource}/ssf`, pushUrl: `${api}/ssf/events`, authorization: LOCAL_SSF_AUTHORIZATION });
          return (await transmitter.push(transmitter.agentSessionsRevoked(agent, 'alice@example.com'))).status;
        }
      : undefined,
    stepUp: zone !== undefined,
    runJob: service ? () => app.get(DigestJob).run() : undefined,
  });
  for (const [i, s] of steps.entries()) {
    console.log(`${s.ok ? '✔' : '✘'} ${i + 1}. ${s.title}`);
    console.log(`     ${s.detail.split('\n').map((l) => l.slice(0, 300)).join('\n     ')}\n`);
  }
  const failed = steps.filter((s) => !s.ok).length;
  console.log(`Tour: ${steps.length - failed} of ${steps.length} steps answered as expected`);

  if (demo) {
    await Promise.all(agents.map((a) => a.close()));
    await app.close();
    await notesApp.close();
    await zone?.stop();
    process.exitCode = failed === 0 && steps.length >= 10 ? 0 : 1;
    return;
  }
  printAudit = true;
  stopWithParent();
  if (zone) {
    const token = zone.issueToken({ aud: resource, client_id: 'agent-a', sub: 'alice@example.com', scope: 'read write admin' });
    console.log(`\nTry it yourself (this token is valid for 5 minutes):
  curl -i ${api}/.well-known/oauth-protected-resource
  curl -i ${api}/api/data
  curl -i -H "Authorization: Bearer ${token}" ${api}/api/admin
\nThe API keeps running; Ctrl-C to stop.`);
  }
}

/**
 * `npm start` runs this process under npm: when npm goes away (killed, terminal closed) without
 * passing a signal on, exit too rather than keep serving on the port. The check is a cheap timer
 * that does not keep the process alive by itself.
 */
function stopWithParent(): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 1000).unref();
}

/** The local zone signs the dev user in at once: follow its redirect to the login helper's listener. */
async function followRedirect(url: string): Promise<void> {
  const authorize = await fetch(url, { redirect: 'manual' });
  const location = authorize.headers.get('location');
  if (!location) throw new Error(`the local zone answered ${authorize.status} without a redirect`);
  await fetch(location);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
