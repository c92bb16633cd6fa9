import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The Nest HTTP adapters the target runs on, each in its own app. */
export type ConformanceAdapter = 'express' | 'fastify';

/** One check of one scenario, as the suite reported it. */
export interface Verdict {
  /** The Nest HTTP adapter the target ran on. */
  adapter: ConformanceAdapter;
  shape: string;
  scenario: string;
  id: string;
  name: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO';
  message?: string;
  /** The suite found nothing to exercise the check on (its "Not testable" failures). */
  untestable?: boolean;
}

/** What the suite writes to `checks.json` for each check (the fields read here). */
interface SuiteCheck {
  id: string;
  name: string;
  status: Verdict['status'];
  errorMessage?: string;
  details?: { message?: string; untestable?: boolean };
}

const require = createRequire(import.meta.url);
const PACKAGE = '@modelcontextprotocol/conformance';

/** The installed suite's version (pinned in package.json). */
export function suiteVersion(): string {
  return (JSON.parse(readFileSync(require.resolve(`${PACKAGE}/package.json`), 'utf8')) as { version: string }).version;
}

/** The suite's CLI (it runs on Node 22 or later: it imports `fs.globSync`). */
function suiteCli(): string {
  return join(dirname(require.resolve(`${PACKAGE}/package.json`)), 'dist', 'index.js');
}

let node: string | undefined;
/**
 * A Node ≥ 22 binary: `CONFORMANCE_NODE`, this one when it is recent enough, else Node 22 from the
 * npm registry (`npx -y -p node@22`, cached after the first run), as the consumer matrix gets it.
 */
function node22(): string {
  if (node !== undefined) return node;
  if (process.env.CONFORMANCE_NODE) return (node = process.env.CONFORMANCE_NODE);
  if (Number(process.versions.node.split('.')[0]) >= 22) return (node = process.execPath);
  const bin = execFileSync('npx', ['-y', '-p', 'node@22', '--', 'sh', '-c', 'command -v node'], { encoding: 'utf8' });
  return (node = bin.trim().split('\n').pop()!);
}

/** Runs one scenario of the suite against `url` and returns its checks (each printed as it comes with `print`). */
export async function runScenario(run: { adapter: ConformanceAdapter; shape: string; url: string; scenario: string; specVersion?: string; print?: boolean }): Promise<Verdict[]> {
  const out = mkdtempSync(join(tmpdir(), 'mcp-conformance-'));
  const version = run.specVersion === undefined ? [] : ['--spec-version', run.specVersion];
  try {
    const code = await spawnCli(['server', '--url', run.url, '--scenario', run.scenario, ...version, '-o', out]);
    const checks = readChecks(out);
    if (checks === undefined) return [{ adapter: run.adapter, shape: run.shape, scenario: run.scenario, id: run.scenario, name: 'scenario', status: 'FAILURE', message: `the suite exited ${code} without results` }];
    const verdicts = checks.filter((c) => c.status !== 'INFO').map((c) => verdictOf(run, c));
    if (run.print) for (const v of verdicts) console.log(`${v.status.padEnd(7)} ${run.adapter} · ${run.shape} · ${run.scenario}${run.specVersion ? ` @${run.specVersion}` : ''} · ${v.id} (${v.name})${v.message ? `: ${v.message}` : ''}`);
    return verdicts;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function verdictOf(run: { adapter: ConformanceAdapter; shape: string; scenario: string }, check: SuiteCheck): Verdict {
  const message = check.status === 'SUCCESS' ? undefined : (check.errorMessage ?? check.details?.message);
  const untestable = check.details?.untestable === true ? { untestable: true } : {};
  return { adapter: run.adapter, shape: run.shape, scenario: run.scenario, id: check.id, name: check.name, status: check.status, message, ...untestable };
}

/** The checks the suite saved under `dir` (one result directory per scenario run). */
function readChecks(dir: string): SuiteCheck[] | undefined {
  const [result] = readdirSync(dir);
  if (result === undefined) return undefined;
  try {
    return JSON.parse(readFileSync(join(dir, result, 'checks.json'), 'utf8')) as SuiteCheck[];
  } catch {
    return undefined;
  }
}

/** The suite's own console output is kept and shown only when it produced no results. */
function spawnCli(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(node22(), [suiteCli(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('close', (code) => {
      if (code !== 0 && process.env.CONFORMANCE_VERBOSE) console.log(output);
      resolve(code ?? 1);
    });
  });
}
