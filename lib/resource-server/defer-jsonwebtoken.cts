// A CommonJS file in both builds (`.cts` compiles to `.cjs`), so `require` and its cache are at hand.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS on purpose (see above)
import Module = require('node:module');

/** jsonwebtoken's `verify`, as passport-jwt's `lib/verify_jwt.js` calls it. */
type Verify = (token: unknown, secretOrKey: unknown, options: unknown, callback: unknown) => unknown;

/**
 * passport-jwt's `lib/strategy.js` requires its `./verify_jwt.js`, which requires jsonwebtoken and
 * with it semver, jws, jwa and seven lodash packages: about 0.5 MB of live heap in every process
 * (issue 24), for a verifier this module's own tokens never reach (see `installTokenVerifier`).
 * Before passport-jwt loads, its `verify_jwt` is given a module that does what that file does but
 * requires jsonwebtoken on its first call: an app's own passport-jwt strategy verifies exactly as
 * before, a process without one never loads jsonwebtoken. Nothing is done when passport-jwt is
 * already loaded, when the file is not where passport-jwt 4 keeps it, in a bundle, or inside a
 * module registry of its own (Jest's): there passport-jwt loads as it always did.
 */
function deferJsonWebToken(): void {
  let path: unknown;
  try {
    path = require.resolve('passport-jwt/lib/verify_jwt.js');
  } catch {
    return;
  }
  // A bundler's `require` answers a module id, not a file: leave passport-jwt to it.
  if (typeof path !== 'string' || require.cache[path] !== undefined) return;
  const passportJwtRequire = Module.createRequire(path);
  let verify: Verify | undefined;
  const deferred = new Module(path);
  deferred.filename = path;
  deferred.loaded = true;
  deferred.exports = function verifyJwt(token: unknown, secretOrKey: unknown, options: unknown, callback: unknown): unknown {
    verify ??= (passportJwtRequire('jsonwebtoken') as { verify: Verify }).verify;
    return verify(token, secretOrKey, options, callback);
  };
  require.cache[path] = deferred;
}

deferJsonWebToken();
