/**
 * One link of an RFC 8693 delegation chain (`act` claim): who acted, and on whose behalf they in
 * turn acted (`actor`), outermost first.
 * @publicApi
 */
export interface ActorChain {
  /** `sub` of the acting party. */
  subject?: string;
  /** `client_id` of the acting party, when the zone records it. */
  clientId?: string;
  /** The next, earlier actor. */
  actor?: ActorChain;
}

/**
 * Who is calling, for whom, and with what rights: built from a verified access token only.
 * `@Agent()` injects it; `request.user` holds the same object.
 * @publicApi
 */
export interface AgentContext {
  /**
   * `client_id`: the agent (application) that holds the token; the claim the `claimMapping` option
   * names instead (`azp`, `appid`, `cid`) for zones that are not RFC 9068 profiles.
   */
  readonly clientId: string;
  /**
   * The agent's stable identity at its issuer: Keycard's `keycard_app_id` claim when the token has
   * one (it survives a credential rotation), else `client_id`. With {@link issuer} and
   * {@link subject} it names the principal that connections, sessions, rate limits and audit
   * records are keyed on (catalogue Q18).
   */
  readonly agentId: string;
  /** `sub`: the user on whose behalf the agent acts. */
  readonly subject: string;
  /** `sid`: the user's session at the zone, when present. */
  readonly sessionId?: string;
  /** `scope`, split on spaces: what this token may do. */
  readonly scopes: readonly string[];
  /** `iss`: the zone that issued the token. */
  readonly issuer: string;
  /** `aud`, always as an array. */
  readonly audience: readonly string[];
  /** `exp` as a date. */
  readonly expiresAt: Date;
  /** `iat` as a date. */
  readonly issuedAt: Date;
  /**
   * `jti`: the token's unique id (safe to log). Always present unless the `claimMapping` option
   * sets `requireJti: false` and the zone issues none.
   */
  readonly tokenId?: string;
  /** The RFC 8693 `act` delegation chain, when present. */
  readonly actor?: ActorChain;
  /** Every claim of the token, frozen. */
  readonly claims: Readonly<Record<string, unknown>>;
}
