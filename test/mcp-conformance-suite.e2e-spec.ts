/**
 * Catalogue U17: the published server scenarios of the official MCP conformance suite
 * (`@modelcontextprotocol/conformance`, pinned in package.json; it runs on Node ≥ 22, fetched with
 * `npx -y -p node@22` when this Node is older) against the sample's MCP servers on every MCP shape the
 * module protects, over Express and over Fastify, on loopback, through the token proxy (the suite's runner cannot send a token),
 * so every transport check runs behind the guard. The suite runs once, while this file loads, and
 * each check it reports becomes one test named by row, shape, scenario and check id: SUCCESS or
 * SKIPPED passes; a check the suite could not exercise on one shape ("Not testable": mcp-nest
 * refuses the `x-mcp-header` tool the custom-header checks need) passes only when listed for that
 * shape in `sample/conformance/expected-failures.ts` with its reason; any other FAILURE or WARNING
 * fails, and so does a listed entry that no longer fails. The suite's own fixture tools
 * (`test_missing_capability`, `test_logging_tool`, …) are served by the target on both 2026-07-28
 * shapes, behind the guard (`sample/conformance/*-fixtures.ts`).
 *
 * Run by `npm run conformance:mcp` (CI: `.ci/run`), not by `npm test`: about three minutes on a loaded machine.
 */
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectedFailureOf, isExpectedFailure, staleExpectedFailures } from '../sample/conformance/expected-failures.js';
import type { ConformanceRun } from '../sample/conformance/run.js';
import type { Verdict } from '../sample/conformance/suite.js';
import { TARGETS } from '../sample/conformance/targets.js';
import { ROOT } from './support/catalogue.js';

/**
 * One run of the suite, by the compiled runner (`npm run build:sample`; `conformance:mcp` builds it
 * first) in its own Node process: the sample app it starts uses packages Jest's ESM mode cannot load.
 */
function runSuite(): ConformanceRun {
  const runner = join(ROOT, 'dist-sample', 'sample', 'conformance', 'main.js');
  if (!existsSync(runner)) throw new Error(`${runner} is missing: run npm run build:sample (npm run conformance:mcp does)`);
  const dir = mkdtempSync(join(tmpdir(), 'mcp-conformance-run-'));
  try {
    const out = join(dir, 'run.json');
    const child = spawnSync(process.execPath, [runner, '--json', out], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
    if (!existsSync(out)) throw new Error(`the conformance runner wrote no results (exit ${child.status}):\n${child.stdout}\n${child.stderr}`);
    return JSON.parse(readFileSync(out, 'utf8')) as ConformanceRun;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const run = runSuite();

/** The checks of one shape and scenario on one adapter, as the suite reported them. */
const verdictsOf = (adapter: string, shape: string, scenario: string) => run.verdicts.filter((v) => v.adapter === adapter && v.shape === shape && v.scenario === scenario);
/** Every shape on every adapter, as `describe.each` rows. */
const TARGETS_ON_ADAPTERS = run.adapters.flatMap((adapter) => TARGETS.map((target) => [`${target.shape} over ${adapter}`, adapter, target] as const));

/** The test's expectation for one check (the whole verdict is compared, so a failure shows the suite's message). */
function expectPassed(verdict: Verdict): void {
  if (isExpectedFailure(verdict)) return;
  expect({ id: verdict.id, status: verdict.status, message: verdict.message }).toMatchObject({ status: expect.stringMatching(/^(SUCCESS|SKIPPED)$/) });
}

/** Check id and name, and the verdict (with the listed reason when the suite could not exercise it). */
function titleOf(v: Verdict): string {
  const reason = isExpectedFailure(v) ? ` (expected: ${expectedFailureOf(v)?.reason})` : '';
  return `${v.id} (${v.name}): ${v.status}${reason}${v.status === 'SKIPPED' && v.message ? ` (${v.message})` : ''}`;
}

describe(`MCP conformance suite ${run.version}, published server scenarios through the token proxy`, () => {
  it('U17 every scenario of every shape reported checks', () => {
    expect(run.adapters).toEqual(['express', 'fastify']);
    for (const [, adapter, target] of TARGETS_ON_ADAPTERS) {
      for (const scenario of target.scenarios) expect({ adapter, shape: target.shape, scenario, checks: verdictsOf(adapter, target.shape, scenario).length > 0 }).toMatchObject({ checks: true });
      const probes = run.fixtureProbes.filter((p) => p.adapter === adapter && p.shape === target.shape).length;
      if (target.fixtures) expect({ adapter, shape: target.shape, probes }).toEqual({ adapter, shape: target.shape, probes: 4 });
    }
  });

  it('U17 every check listed as expected to fail on a shape still fails there as listed (a stale entry must go)', () => {
    expect(staleExpectedFailures(run.verdicts)).toEqual([]);
  });

  describe.each(TARGETS_ON_ADAPTERS.filter(([, , t]) => t.fixtures))('%s: the fixture tools do what they stand for (our probes, not the suite\'s checks)', (_title, adapter, target) => {
    it.each(run.fixtureProbes.filter((p) => p.adapter === adapter && p.shape === target.shape).map((p) => [p.id, p] as const))('U17 fixtures %s', (_id, probe) => {
      expect({ id: probe.id, status: probe.status, message: probe.message }).toMatchObject({ status: 'SUCCESS' });
    });
  });

  describe.each(TARGETS_ON_ADAPTERS)('%s', (_title, adapter, target) => {
    describe.each(target.scenarios)('%s', (scenario) => {
      const verdicts = verdictsOf(adapter, target.shape, scenario);
      // Two checks of one scenario may share an id (one requirement, several cases): the name tells them apart.
      it.each(verdicts.map((v) => [titleOf(v), v] as const))(`U17 ${scenario} %s`, (_title, verdict) => {
        expectPassed(verdict);
      });
    });
  });
});
