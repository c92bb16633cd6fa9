import { tokenFingerprint } from '../exchange/token-fingerprint.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardOptions } from '../keycard-options.js';
import { toAgentContext } from '../resource-server/access-token-rules.js';
import { InvalidTokenException } from '../resource-server/keycard.exceptions.js';
import type { IntrospectionAnswer } from './introspection.client.js';

/** What an answer is judged against: the zone asked, the call's resource, the module's clock. */
export interface AnswerExpectations {
  readonly issuer: string;
  readonly audience: string;
  readonly nowSeconds: number;
}

/** Agents built from an introspection answer: fresh by construction for the call they were built for. */
const introspected = new WeakSet<AgentContext>();

/** True when `agent` was built from an introspection answer (an opaque token), for this call. */
export function isIntrospected(agent: AgentContext): boolean {
  return introspected.has(agent);
}

/**
 * The agent of an opaque token from the zone's answer (RFC 7662 §2.2), through the same claim rules
 * as a JWT's payload: `active` must be true, `aud` must name `expected.audience` and `iss` must be
 * the zone (Q36: an opaque token carries neither, so the answer must), `exp` not passed (with the
 * leeway), `sub` and `client_id` present, `cnf` only as a DPoP binding with DPoP on. An answer
 * without `iat` or `exp` is taken as issued and ending now (good for this call only); without
 * `jti`, the token's id is a fingerprint of it (never the token).
 * @throws InvalidTokenException (401 `invalid_token`).
 */
export function introspectedAgent(
  answer: IntrospectionAnswer,
  token: string,
  judged: { expected: AnswerExpectations; options: Pick<KeycardOptions, 'clockToleranceSeconds' | 'readScpClaim' | 'claimMapping' | 'dpop'> },
): AgentContext {
  if (!answer.active) throw new InvalidTokenException('token_inactive');
  const { members } = answer;
  checkTokenType(members.token_type);
  const now = judged.expected.nowSeconds;
  const payload = {
    ...members,
    iat: members.iat ?? Math.floor(now),
    exp: members.exp ?? Math.ceil(now),
    jti: members.jti ?? `introspected:${tokenFingerprint(token).slice(0, 22)}`,
  };
  const agent = toAgentContext(payload, judged.expected, judged.options);
  introspected.add(agent);
  return agent;
}

/**
 * A JWT's introspection answer judged for the call (X29, X30): `active`; then what the answer
 * states must agree with the call — `exp` not passed (with `leewaySeconds`), `aud` (when given)
 * naming the call's resource (`audiences`: that one; on a connection's message, the token's own),
 * `iss` (when given) the zone. The JWT itself was verified already;
 * the route's scopes are judged after this on every call, cached answer or not.
 * @throws InvalidTokenException (401 `invalid_token`).
 */
export function checkJwtAnswer(
  answer: IntrospectionAnswer,
  expected: Omit<AnswerExpectations, 'audience'> & { readonly audiences: readonly string[] },
  leewaySeconds: number,
): void {
  if (!answer.active) throw new InvalidTokenException('token_inactive');
  const { exp, aud, iss, token_type: tokenType } = answer.members;
  checkTokenType(tokenType);
  if (exp !== undefined && (typeof exp !== 'number' || exp + leewaySeconds < expected.nowSeconds)) throw new InvalidTokenException('expired');
  if (iss !== undefined && iss !== expected.issuer) throw new InvalidTokenException('issuer_mismatch');
  if (aud === undefined) return;
  const audience = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(audience) || !expected.audiences.some((id) => audience.includes(id))) throw new InvalidTokenException('audience_mismatch');
}

/**
 * `token_type` values of an access token (RFC 7662 §2.2 names RFC 6749 §7.1's types; some zones
 * answer with the RFC 8693 token type URI). An introspection endpoint also answers about refresh
 * and ID tokens, `active` included: one of those is never an access token here, whatever else the
 * answer says. Compared case-insensitively (`Bearer`, `bearer`).
 */
const ACCESS_TOKEN_TYPES = new Set(['bearer', 'dpop', 'access_token', 'urn:ietf:params:oauth:token-type:access_token']);

/** @throws InvalidTokenException `claim_invalid` when the answer names a `token_type` that is not an access token's. */
function checkTokenType(tokenType: unknown): void {
  if (tokenType === undefined) return;
  if (typeof tokenType !== 'string' || !ACCESS_TOKEN_TYPES.has(tokenType.toLowerCase())) throw new InvalidTokenException('claim_invalid');
}
