import { TestZone } from '../../lib/testing/index.js';
import { freePort } from '../free-port.js';
import { probeFixtures } from './fixture-probes.js';
import { runScenario, suiteVersion, type ConformanceAdapter, type Verdict } from './suite.js';
import { startConformanceTarget } from './target-app.js';
import { CONFORMANCE_PATHS, TARGETS } from './targets.js';
import { startTokenProxy } from './token-proxy.js';

/** What one run of the suite against every shape on every adapter found. */
export interface ConformanceRun {
  version: string;
  adapters: readonly ConformanceAdapter[];
  verdicts: Verdict[];
  /** What the suite's checks leave out: each fixture tool does what it stands for (scenario `fixtures`, ours, not the suite's). */
  fixtureProbes: Verdict[];
}

/** Both Nest HTTP adapters the module supports (catalogue §U: each row over Express and Fastify). */
export const CONFORMANCE_ADAPTERS: readonly ConformanceAdapter[] = ['express', 'fastify'];

/**
 * Runs the official MCP conformance suite (pinned in package.json) against the sample's MCP servers
 * on every shape of {@link TARGETS}, on each Nest HTTP adapter in turn, over loopback, through a
 * token proxy (the suite's runner cannot send a token), and returns every check's verdict. Starts
 * and stops its own zone, and a proxy and an app per adapter.
 */
export async function runConformance(options: { print?: boolean } = {}): Promise<ConformanceRun> {
  const zone = await TestZone.start();
  const run: ConformanceRun = { version: suiteVersion(), adapters: CONFORMANCE_ADAPTERS, verdicts: [], fixtureProbes: [] };
  try {
    for (const adapter of CONFORMANCE_ADAPTERS) await runOnAdapter({ zone, adapter, run, print: options.print });
  } finally {
    await zone.stop();
  }
  return run;
}

/** Every target on one adapter: its own app and token proxy (resources are named by the proxy's origin). */
async function runOnAdapter(on: { zone: TestZone; adapter: ConformanceAdapter; run: ConformanceRun; print?: boolean }): Promise<void> {
  const apiPort = await freePort();
  let origin = '';
  const resources = () => Object.values(CONFORMANCE_PATHS).map((path) => `${origin}${path}`);
  const proxy = await startTokenProxy({ port: apiPort }, () => on.zone.issueToken({ aud: resources(), scope: 'read admin', sub: 'conformance@example.com', client_id: 'conformance' }));
  origin = proxy.origin;
  try {
    const app = await startConformanceTarget({ zoneUrl: on.zone.issuer, publicOrigin: origin, port: apiPort, adapter: on.adapter });
    try {
      for (const target of TARGETS) {
        const url = `${origin}${target.path}`;
        for (const scenario of target.scenarios) on.run.verdicts.push(...(await runScenario({ adapter: on.adapter, shape: target.shape, url, scenario, specVersion: target.specVersion, print: on.print })));
        if (target.fixtures) on.run.fixtureProbes.push(...(await probeFixtures({ adapter: on.adapter, shape: target.shape, url })));
      }
    } finally {
      await app.close();
    }
  } finally {
    await proxy.close();
  }
}
