import { TestZone } from '../../lib/testing/index.js';
import { freePort } from '../free-port.js';
import { probeFixtures } from './fixture-probes.js';
import { runScenario, suiteVersion, type Verdict } from './suite.js';
import { startConformanceTarget } from './target-app.js';
import { CONFORMANCE_PATHS, TARGETS } from './targets.js';
import { startTokenProxy } from './token-proxy.js';

/** What one run of the suite against every shape found. */
export interface ConformanceRun {
  version: string;
  origin: string;
  verdicts: Verdict[];
  /** What the suite's checks leave out: each fixture tool does what it stands for (scenario `fixtures`, ours, not the suite's). */
  fixtureProbes: Verdict[];
}

/**
 * Runs the official MCP conformance suite (pinned in package.json) against the sample's MCP servers
 * on every shape of {@link TARGETS}, over loopback, through a token proxy (the suite's runner cannot
 * send a token), and returns every check's verdict. Starts and stops its own zone, proxy and app.
 */
export async function runConformance(options: { print?: boolean } = {}): Promise<ConformanceRun> {
  const apiPort = await freePort();
  let origin = '';
  const zone = await TestZone.start();
  const resources = () => Object.values(CONFORMANCE_PATHS).map((path) => `${origin}${path}`);
  const proxy = await startTokenProxy({ port: apiPort }, () => zone.issueToken({ aud: resources(), scope: 'read admin', sub: 'conformance@example.com', client_id: 'conformance' }));
  origin = proxy.origin;
  const app = await startConformanceTarget({ zoneUrl: zone.issuer, publicOrigin: origin, port: apiPort });
  const verdicts: Verdict[] = [];
  const fixtureProbes: Verdict[] = [];
  try {
    for (const target of TARGETS) {
      for (const scenario of target.scenarios) {
        verdicts.push(...(await runScenario({ shape: target.shape, url: `${origin}${target.path}`, scenario, specVersion: target.specVersion, print: options.print })));
      }
      if (target.fixtures) fixtureProbes.push(...(await probeFixtures(target.shape, `${origin}${target.path}`)));
    }
  } finally {
    await app.close();
    await proxy.close();
    await zone.stop();
  }
  return { version: suiteVersion(), origin, verdicts, fixtureProbes };
}
