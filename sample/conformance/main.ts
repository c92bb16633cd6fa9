/**
 * `npm run conformance:mcp`: the official MCP conformance suite (`@modelcontextprotocol/conformance`,
 * pinned in package.json) against the sample's MCP server on both MCP shapes the module protects,
 * over loopback, through a token proxy (the suite's runner cannot send a token). Prints every
 * check's verdict and exits non-zero when a check fails that is not listed as expected to fail.
 */
import 'reflect-metadata';
import { TestZone } from '../../lib/testing/index.js';
import { freePort } from '../free-port.js';
import { EXPECTED_FAILURES } from './expected-failures.js';
import { runScenario, suiteVersion, type Verdict } from './suite.js';
import { CONFORMANCE_PATHS, startConformanceTarget } from './target-app.js';
import { startTokenProxy } from './token-proxy.js';

/** The published server scenarios each shape runs (catalogue U17), and the stateful-only one. */
const SCENARIOS = ['dns-rebinding-protection', 'http-header-validation', 'http-custom-header-server-validation', 'caching', 'server-stateless'];
const STATEFUL_SCENARIOS = ['server-session-lifecycle'];

/**
 * mcp-nest 2.x runs on the MCP SDK 2.x server, which implements 2026-07-28. The SDK 1.x transport
 * (the `@McpEndpoint()` shape here) implements revisions up to 2025-11-25 only, so it runs the
 * scenarios of that revision: DNS rebinding (the module's `Origin` check) and, stateful, the
 * session lifecycle.
 */
const TARGETS: { shape: string; path: string; scenarios: string[]; specVersion?: string }[] = [
  { shape: 'mcp-nest 2.x (stateless)', path: CONFORMANCE_PATHS.mcpNest, scenarios: SCENARIOS },
  { shape: 'mcp-nest 2.x (stateful)', path: CONFORMANCE_PATHS.mcpNestStateful, scenarios: [...STATEFUL_SCENARIOS, 'dns-rebinding-protection'], specVersion: '2025-11-25' },
  { shape: 'MCP SDK 1.x transport, @McpEndpoint()', path: CONFORMANCE_PATHS.sdk, scenarios: ['dns-rebinding-protection'], specVersion: '2025-11-25' },
];

async function main(): Promise<number> {
  const apiPort = await freePort();
  let origin = '';
  const zone = await TestZone.start();
  const resources = () => Object.values(CONFORMANCE_PATHS).map((path) => `${origin}${path}`);
  const proxy = await startTokenProxy({ port: apiPort }, () => zone.issueToken({ aud: resources(), scope: 'read admin', sub: 'conformance@example.com', client_id: 'conformance' }));
  origin = proxy.origin;
  const app = await startConformanceTarget({ zoneUrl: zone.issuer, publicOrigin: origin, port: apiPort });
  console.log(`@modelcontextprotocol/conformance ${suiteVersion()} against ${origin} (token proxy → 127.0.0.1:${apiPort})`);
  const verdicts: Verdict[] = [];
  try {
    for (const target of TARGETS) {
      for (const scenario of target.scenarios) {
        verdicts.push(...(await runScenario({ shape: target.shape, url: `${origin}${target.path}`, scenario, specVersion: target.specVersion })));
      }
    }
  } finally {
    await app.close();
    await proxy.close();
    await zone.stop();
  }
  return summarise(verdicts);
}

/** One line per status, the unexpected failures again at the end; the exit status. */
function summarise(verdicts: Verdict[]): number {
  const count = (status: string) => verdicts.filter((v) => v.status === status).length;
  const expected = (v: Verdict) => EXPECTED_FAILURES[`${v.scenario}/${v.id}`];
  const failed = verdicts.filter((v) => v.status === 'FAILURE' && expected(v) === undefined);
  const known = count('FAILURE') - failed.length;
  console.log(
    `\nconformance:mcp (@modelcontextprotocol/conformance ${suiteVersion()}): ${verdicts.length} checks: ${count('SUCCESS')} SUCCESS, ` +
      `${count('SKIPPED')} SKIPPED, ${count('WARNING')} WARNING, ${known} expected FAILURE (fixture-only, listed with reasons), ${failed.length} unexpected FAILURE`,
  );
  for (const v of verdicts) if (v.status !== 'FAILURE' && expected(v) !== undefined) console.log(`  now passes, remove from the expected list: ${v.scenario}/${v.id}`);
  for (const f of failed) console.log(`  FAILURE ${f.shape} ${f.scenario} ${f.id} (${f.name}): ${f.message ?? ''}`);
  return failed.length === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (error: unknown) => {
  console.error(error);
  process.exit(1);
});
