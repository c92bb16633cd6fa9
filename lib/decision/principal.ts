
/**
 * Who a verified call acts as (catalogue Q18): the issuer, the user (`sub`) and the agent's stable
 * id (`AgentContext.agentId`). A `client_id` or `sub` is unique only at its issuer (RFC 6749
 * §2.2), so every key the module derives from a principal names the issuer too.
 * @publicApi
 */
export interface Principal {
  readonly issuer: string;
  readonly subject: string;
  readonly agentId: string;
}

/**
 * True when two verified agents are the same principal: the same issuer, user and stable agent id.
 * A fresh token of the same principal (a new `jti`, a rotated `client_id` of one Keycard app) is
 * the same principal; another agent of the same user is not.
 */
export function samePrincipal(a: Principal, b: Principal): boolean {
  return a.issuer === b.issuer && a.subject === b.subject && a.agentId === b.agentId;
}

/**
 * A string key for the principal, for maps and stores: its parts JSON-encoded, so no choice of
 * claim values (a `sub` holding the separator) makes two principals share a key.
 */
export function principalKey(principal: Principal): string {
  return JSON.stringify([principal.issuer, principal.subject, principal.agentId]);
}

/**
 * Only the principal of a verified agent (issuer, user, stable agent id): what may be stored beside
 * a carrier's state (a socket.io session in the adapter, possibly Redis) to bind it, and nothing
 * else of the token.
 */
export function principalOf(principal: Principal): Principal {
  return { issuer: principal.issuer, subject: principal.subject, agentId: principal.agentId };
}
