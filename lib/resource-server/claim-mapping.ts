import { unknownOptionMessage } from '../option-names.js';

/**
 * Where a zone's access tokens name the agent, for zones whose JWT access tokens are not RFC 9068
 * profiles (the `claimMapping` option; catalogue T31).
 * @publicApi
 */
export interface ClaimMappingOption {
  /**
   * The claim that names the client (agent) holding the token, read into `AgentContext.clientId`:
   * `azp` for Keycloak, Auth0's default profile and Entra ID v2 tokens, `appid` for Entra ID v1,
   * `cid` for Okta. Only this claim is read: a token without it (or with a non-string or empty
   * value) is refused as `invalid_token`, whatever else it carries.
   * @default 'client_id' (RFC 9068 §2.2)
   */
  agent?: string;
  /**
   * Whether a token must carry a `jti` (RFC 9068 §2.2). `false` for zones that issue none (Auth0's
   * default profile, Entra ID): `AgentContext.tokenId` is then absent on their tokens, and
   * revocation by token id cannot name them. A `jti` that is present must still be a non-empty
   * string.
   * @default true
   */
  requireJti?: boolean;
}

/** {@link ClaimMappingOption} compiled at bootstrap: the claim reader the verification calls per token. */
export interface ClaimMapping {
  /** The configured agent claim's name, for the configuration summary. */
  readonly agentClaim: string;
  /** The agent claim's value of a verified payload (unchecked: the access-token rules type it). */
  readonly agentOf: (payload: Readonly<Record<string, unknown>>) => unknown;
  readonly requireJti: boolean;
}

const KNOWN = ['agent', 'requireJti'];
/**
 * Claims with a fixed meaning elsewhere in the token: naming the agent by one of them would make
 * the user, the issuer or the token itself pass for the agent. Object prototype names are refused
 * as well, so a missing claim can never read an inherited member.
 */
const NOT_AN_AGENT = new Set([
  'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'scope', 'scp', 'act', 'cnf', 'sid', 'acr', 'amr', 'auth_time',
  '__proto__', 'constructor', 'prototype',
]);

/** RFC 9068: the client is `client_id`; the default costs one property read. */
export const RFC_9068_CLAIMS: ClaimMapping = Object.freeze({
  agentClaim: 'client_id',
  agentOf: (payload: Readonly<Record<string, unknown>>) => payload.client_id,
  requireJti: true,
});

/**
 * Validates the `claimMapping` option and compiles its reader.
 * @throws TypeError naming the entry, which fails the bootstrap.
 */
export function compileClaimMapping(raw: unknown): ClaimMapping {
  if (raw === undefined) return RFC_9068_CLAIMS;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('claimMapping', 'must be an object: { agent?, requireJti? }');
  for (const key of Object.keys(raw)) {
    if (!KNOWN.includes(key)) fail(`claimMapping.${key}`, unknownOptionMessage(key, KNOWN));
  }
  const { agent = 'client_id', requireJti = true } = raw as ClaimMappingOption;
  if (typeof agent !== 'string' || agent.length === 0) fail('claimMapping.agent', 'must be a non-empty claim name');
  if (NOT_AN_AGENT.has(agent)) fail('claimMapping.agent', `cannot be '${agent}': that claim does not name the client`);
  if (typeof requireJti !== 'boolean') fail('claimMapping.requireJti', 'must be a boolean');
  if (agent === 'client_id' && requireJti) return RFC_9068_CLAIMS;
  return Object.freeze({
    agentClaim: agent,
    // An own property only: the payload is parsed JSON, and an absent claim must read as absent.
    agentOf: (payload: Readonly<Record<string, unknown>>) => (Object.hasOwn(payload, agent) ? payload[agent] : undefined),
    requireJti,
  });
}

function fail(option: string, problem: string): never {
  throw new TypeError(`KeycardModule: '${option}' ${problem}`);
}
