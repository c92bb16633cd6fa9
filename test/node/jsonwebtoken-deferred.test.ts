/**
 * Issue 24: passport-jwt requires jsonwebtoken (with semver, jws and lodash packages, about 0.5 MB
 * of live heap) for a verifier the module's own tokens never reach. Run in a child process, since
 * only Node's own loader (not a test runner's registry) shows what a process loads. Compiled by
 * `npm run test:node`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const fixture = fileURLToPath(new URL('./fixtures/jsonwebtoken-deferred-app.js', import.meta.url));

void describe('jsonwebtoken loaded only when something else than the module verifies with passport-jwt', () => {
  void it("an app that uses only the module's strategy never loads jsonwebtoken; an app's own passport-jwt strategy still verifies with it", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [fixture], { timeout: 60_000 });
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as unknown;
    assert.deepEqual(report, {
      statuses: { 200: 10, 401: 10 },
      afterRequests: false,
      own: { error: null, sub: 'app-user' },
      wrong: { error: 'JsonWebTokenError' },
      afterOwnStrategy: true,
    });
  });
});
