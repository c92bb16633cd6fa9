/**
 * `npm run conformance:mcp:report`: the official MCP conformance suite (`@modelcontextprotocol/conformance`,
 * pinned in package.json) against the sample's MCP servers on every MCP shape the module protects,
 * over Express and Fastify, on loopback, through a token proxy (the suite's runner cannot send a token). Prints every
 * check's verdict and a summary, and exits non-zero when a check fails that is not listed as
 * expected to fail. `npm run conformance:mcp` runs it from test/mcp-conformance-suite.e2e-spec.ts
 * (`--json`), where each check is a test (catalogue U17).
 */
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { isExpectedFailure, staleExpectedFailures } from './expected-failures.js';
import { runConformance, type ConformanceRun } from './run.js';
import { suiteVersion, type Verdict } from './suite.js';

/** `--json <file>`: write the run ({@link ConformanceRun}) there, for the Jest suite that makes each check a test. */
async function main(): Promise<number> {
  const json = process.argv.indexOf('--json');
  console.log(`@modelcontextprotocol/conformance ${suiteVersion()} against the sample's MCP servers through a token proxy`);
  const run: ConformanceRun = await runConformance({ print: json === -1 });
  if (json !== -1) writeFileSync(process.argv[json + 1], JSON.stringify(run));
  for (const p of run.fixtureProbes) console.log(`${p.status.padEnd(7)} ${p.adapter} · ${p.shape} · fixtures · ${p.id}${p.message ? `: ${p.message}` : ''}`);
  const probesFailed = run.fixtureProbes.filter((p) => p.status !== 'SUCCESS').length;
  console.log(`fixture probes (ours): ${run.fixtureProbes.length - probesFailed} of ${run.fixtureProbes.length} SUCCESS`);
  return Math.max(summarise(run.verdicts), probesFailed === 0 ? 0 : 1);
}

/** One line per status, the unexpected failures and warnings again at the end, stale entries of the expected list; the exit status. */
function summarise(verdicts: Verdict[]): number {
  const count = (status: string) => verdicts.filter((v) => v.status === status).length;
  const failed = verdicts.filter((v) => (v.status === 'FAILURE' || v.status === 'WARNING') && !isExpectedFailure(v));
  const known = verdicts.filter(isExpectedFailure).length;
  console.log(
    `\nconformance:mcp (@modelcontextprotocol/conformance ${suiteVersion()}): ${verdicts.length} checks: ${count('SUCCESS')} SUCCESS, ` +
      `${count('SKIPPED')} SKIPPED, ${count('WARNING')} WARNING, ${count('FAILURE')} FAILURE; ${known} of them listed as expected (with reasons), ${failed.length} unexpected`,
  );
  const stale = staleExpectedFailures(verdicts);
  for (const e of stale) console.log(`  listed as expected but not failing as listed, remove it: ${e.shape} ${e.scenario} ${e.id}`);
  for (const f of failed) console.log(`  ${f.status} ${f.adapter} ${f.shape} ${f.scenario} ${f.id} (${f.name}): ${f.message ?? ''}`);
  return failed.length === 0 && stale.length === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (error: unknown) => {
  console.error(error);
  process.exit(1);
});
