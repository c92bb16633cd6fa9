/**
 * Catalogue W10: without `@opentelemetry/api`, an app that imports KeycardTelemetryModule loads
 * nothing of OpenTelemetry, answers as before and writes its audit lines as before. Runs the app in
 * a child process whose module resolution hides every `@opentelemetry/*` package (they are dev
 * dependencies here). Compiled by `npm run test:node`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

void describe('telemetry without @opentelemetry/api', () => {
  void it('W10 nothing of OpenTelemetry is loaded after 100 requests; answers and audit lines are unchanged; one warning at start', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', fixture('hide-opentelemetry.js'), fixture('telemetry-absent-app.js')], { timeout: 60_000 });
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as unknown;
    assert.deepEqual(report, { statuses: { 200: 50, 401: 50 }, enabled: false, loaded: [], warnings: 1, audits: 100 });
  });
});
