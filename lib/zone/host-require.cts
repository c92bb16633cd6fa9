// A CommonJS file in both builds (`.cts` compiles to `.cjs`), so `require` is at hand in each.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS on purpose (see above)
import nodeModule = require('node:module');

/** The part of Node's `Module` this file uses (`_load` is what `require()` itself calls). */
interface HostModule {
  _load?: (request: string, parent: null, isMain: boolean) => unknown;
}

/**
 * Loads a CommonJS dependency with Node's own loader, even inside Jest's module registry.
 *
 * Why: jwks-rsa 4 `require()`s `jose` 6, which is ESM-only. Node ≥ 20.19 / 22.12 loads it
 * (require(esm)); Jest's registry does not before Node 24.9 and fails every suite of an app that
 * imports this package with "Must use import to load ES Module … jose". Resolving with the
 * runner's `require.resolve` and loading with Node's `Module._load` keeps the user's Jest
 * configuration untouched. Only stateless third-party code is loaded this way (never a Nest
 * package, whose classes must be the app's own copies for DI), so nothing is duplicated.
 *
 * @param specifier a bare package name this package depends on, e.g. `'jwks-rsa'`.
 * @returns the package's `module.exports`.
 */
export function requireFromHost<T>(specifier: string): T {
  const host = nodeModule as unknown as HostModule;
  const path = require.resolve(specifier);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS on purpose (see above)
  return (typeof host._load === 'function' ? host._load(path, null, false) : require(path)) as T;
}
