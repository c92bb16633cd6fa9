// Two reference guards for `bench:cold:disturbed` with COLD_LAYERS=1 (issue 24): they split the
// guard's cold path between the module's rules and the layers that carry them, on the same calls.
//  - "rules": the module's own token rules (the Authorization grammar, the canonical segments and
//    header rules, the key by `kid` and `alg`, one crypto.verify, the claim rules and the frozen
//    agent, the route's scope) in one function, without the decision core, the verified-token
//    cache or the passport-jwt strategy;
//  - "verifier": the module's TokenVerifier (the verified-token cache, the passport-jwt strategy and
//    the same rules) under a minimal guard: the token read, the scope checked, `request.user` set;
// the keycard guard adds the decision core's steps (the call object, verification, admission,
// policy, events) to the latter. Neither reference guard is a product: both skip what the module
// must do (a refusal's answer, an earlier admission, several zones, GraphQL, events).
import { verify } from 'node:crypto';

const MAX_SIGNED = 32 * 1024;

/** @param dist the build's URL; @param app a Nest app of that build's KeycardModule (its options). */
export async function layerGuards({ dist, app, verifierApp, keys, issuer, audience, scope }) {
  const { extractCredentials } = await import(`${dist}/resource-server/bearer-token.extractor.js`);
  const { decodeJws, parsePayload } = await import(`${dist}/resource-server/compact-jws.js`);
  const { checkHeader, toAgentContext } = await import(`${dist}/resource-server/access-token-rules.js`);
  const { holdsAllScopes } = await import(`${dist}/decision/judge.js`);
  const { SignedHeaders } = await import(`${dist}/resource-server/signed-headers.js`);
  const { KEYCARD_OPTIONS } = await import(`${dist}/keycard.constants.js`);
  const { TokenVerifier } = await import(`${dist}/resource-server/token-verifier.js`);
  const { ResourceResolver } = await import(`${dist}/resource-server/resource-resolver.js`);
  const options = app.get(KEYCARD_OPTIONS);
  const headers = new SignedHeaders();
  const scratch = Buffer.allocUnsafeSlow(2 * MAX_SIGNED);
  const required = Object.freeze([scope]);

  class RulesGuard {
    canActivate(context) {
      const request = context.getArgByIndex(0);
      if (request.user !== undefined) return true;
      const token = extractCredentials(request);
      const jws = decodeJws(token, headers.lookup);
      const { alg, kid } = checkHeader(jws.header, options);
      const key = keys.get(kid);
      if (key === undefined || key.alg !== alg) throw new Error('no key');
      const signed = jws.signedLength;
      scratch.write(token, 0, signed, 'latin1');
      const length = scratch.write(token.slice(signed + 1), signed, 'base64url');
      if (!verify('sha256', scratch.subarray(0, signed), key.key, scratch.subarray(signed, signed + length))) throw new Error('signature');
      if (!jws.headerKnown) headers.remember(token.slice(0, jws.headerLength), jws.header);
      const agent = toAgentContext(parsePayload(jws.payload), { issuer, audience, nowSeconds: Date.now() / 1000 }, options);
      if (!holdsAllScopes(agent, required)) throw new Error('scope');
      request.user = agent;
      return true;
    }
  }

  const verifier = verifierApp.get(TokenVerifier);
  let resource;
  class VerifierGuard {
    canActivate(context) {
      const request = context.getArgByIndex(0);
      if (request.user !== undefined) return true;
      resource ??= verifierApp.get(ResourceResolver).forRequest(request);
      const agent = verifier.verify(extractCredentials(request), resource);
      if (!holdsAllScopes(agent, required)) throw new Error('scope');
      request.user = agent;
      return true;
    }
  }
  return { rules: new RulesGuard(), verifier: new VerifierGuard() };
}
