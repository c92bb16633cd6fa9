/**
 * One link of an RFC 8693 delegation chain (`act` claim): who acted, and on whose behalf they in
 * turn acted (`actor`), outermost first. Frozen.
 * @publicApi
 */
export interface ActorChain {
  /** `sub` of the acting party (a non-empty string), when the link has one. */
  subject?: string;
  /** `client_id` of the acting party (a non-empty string), when the zone records it. */
  clientId?: string;
  /** The next, earlier actor (the link's own `act`), when there is one. */
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
  /**
   * The RFC 8693 §4.1 `act` delegation chain, outermost (current) actor first; `undefined` when the
   * token has no `act`. Always the whole chain as the token carries it, link for link: a token
   * whose `act` (or a nested `act`) is not a JSON object, whose link has a `sub` or `client_id`
   * that is not a non-empty string, or whose chain has more than 32 links is refused with 401
   * `invalid_token` before any handler runs (catalogue T29, C19/C20 typing). The raw claim stays
   * in {@link claims}`.act`.
   */
  readonly actor?: ActorChain;
  /** Every claim of the token, frozen. */
  readonly claims: Readonly<Record<string, unknown>>;
}
