import { Strategy } from 'passport-jwt';
import { TokenVerification } from './token-verification.js';

/** passport-jwt's verifier: `JwtStrategy.JwtVerifier(token, secretOrKey, options, callback)` (lib/strategy.js). */
type JwtVerifier = (token: string, secretOrKey: unknown, options: unknown, callback: (error: unknown, payload?: unknown) => void) => unknown;

/** Set once this module's verifier is in place (a CommonJS and an ESM copy of the module each install their own). */
let installed = false;

/**
 * Gives passport-jwt the verifier of this module's tokens (issue 24). passport-jwt checks a token
 * by handing the token and the key its `secretOrKeyProvider` answered with to
 * `JwtStrategy.JwtVerifier`, which is `jsonwebtoken.verify`: a second split, a second base64url
 * decode and JSON parse of header and payload, a streaming `crypto.createVerify`, and claim checks
 * the strategy must make again anyway (jsonwebtoken accepts a token without `exp` and ignores
 * `typ` and `crit`, catalogue J1) — together about a third of a new token's cost. The strategy's
 * key provider answers with the {@link TokenVerification} itself, already decoded and holding the
 * selected key; this verifier checks its signature with one `crypto.verify` and hands passport-jwt
 * the claims, which it passes on to the strategy's `validate`, as ever.
 *
 * `JwtVerifier` is one property of passport-jwt's constructor, shared by every passport-jwt
 * strategy in the process: only a {@link TokenVerification}, which nothing outside this module can
 * make, is verified here; any other key (an app's own passport-jwt strategy) goes to the verifier
 * that was there before, unchanged. If something replaces this verifier later, a
 * `TokenVerification` reaches jsonwebtoken, which refuses it as key material: every token is then
 * refused 401 `invalid_token` (fail closed), never accepted unchecked.
 * @internal
 */
export function installTokenVerifier(): void {
  if (installed) return;
  const holder = Strategy as unknown as { JwtVerifier: JwtVerifier };
  const before = holder.JwtVerifier;
  holder.JwtVerifier = function verifyKeycardToken(token, secretOrKey, options, callback) {
    if (!(secretOrKey instanceof TokenVerification)) return before(token, secretOrKey, options, callback);
    let claims: Record<string, unknown>;
    try {
      claims = secretOrKey.verifiedClaims(token);
    } catch (error) {
      return callback(error);
    }
    return callback(null, claims);
  };
  installed = true;
}
