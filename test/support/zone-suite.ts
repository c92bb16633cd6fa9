import { afterAll, afterEach, beforeAll } from '@jest/globals';
import { TestZone } from '../../lib/testing/index.js';
import { R } from './forge.js';
import type { RunningApp } from './keycard-app.js';

/** What a suite's tests share: one local zone, and the app the current test started (if any). */
export interface ZoneSuite {
  readonly zone: TestZone;
  /** Set by a test that starts an app; closed and cleared after each test. */
  api: RunningApp | undefined;
}

/**
 * One `TestZone` for the enclosing `describe` (audience `R`), and one app per test: after each test
 * the app is closed, the zone's steering and counters are reset, then `reset` runs (for what
 * `zone.reset()` leaves, such as keys a test added). Call it at the top of a `describe` body.
 */
export function zoneSuite(reset?: (zone: TestZone) => void): ZoneSuite {
  const suite = { zone: undefined as unknown as TestZone, api: undefined as RunningApp | undefined };
  beforeAll(async () => {
    suite.zone = await TestZone.start({ audience: R });
  });
  afterEach(async () => {
    await suite.api?.close();
    suite.api = undefined;
    suite.zone.reset();
    reset?.(suite.zone);
  });
  afterAll(() => suite.zone.stop());
  return suite;
}
