import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** Where the browser tests look for Chromium: `CHROMIUM_PATH`, then Debian's and others' names on the PATH. */
const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome'];

/**
 * The system Chromium the browser tests drive (never one downloaded at install time), or the reason
 * there is none. In CI (`CI=true`) a missing Chromium is an error, never a skip: `.ci/run` installs
 * Debian's `chromium` package.
 */
export function findChromium(): { path: string } | { reason: string } {
  const named = process.env.CHROMIUM_PATH;
  for (const candidate of named ? [named] : CANDIDATES) {
    const path = onPath(candidate);
    if (path === undefined) continue;
    const found = spawnSync(path, ['--version'], { stdio: 'ignore' });
    if (!found.error && found.status === 0) return { path };
  }
  const looked = named ? `CHROMIUM_PATH=${named} does not run` : `none of ${CANDIDATES.join(', ')} is on the PATH`;
  if (process.env.CI === 'true') throw new Error(`Chromium is missing in CI (${looked}; .ci/run installs it): browser tests cannot be skipped there`);
  return { reason: `${looked} (apt-get install chromium, or set CHROMIUM_PATH, to run the browser tests)` };
}

/** The absolute path of an executable (the browser driver wants one), or undefined. */
function onPath(name: string): string | undefined {
  const paths = isAbsolute(name) ? [name] : (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, name));
  return paths.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
