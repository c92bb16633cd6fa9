import { InvalidTokenException } from '../resource-server/keycard.exceptions.js';

/** Who acted: the verified token's issuer, the agent's stable id and its `client_id` (RFC 6749 §2.2: unique at its issuer only). @publicApi */
export interface PerformedBy {
  readonly issuer: string;
  /** `keycard_app_id`, else `client_id` (`AgentContext.agentId`, catalogue Q18). */
  readonly agentId: string;
  readonly clientId: string;
}

/**
 * A revocation-list entry as events name it (catalogue W4): what it is keyed on and where it came
 * from. A `revoked` decision's `matchedBy` equals the `entry` of the `revocation_applied` event that
 * added it. Claim values only; never a token.
 * @publicApi
 */
export interface RevocationMatch {
  /** Which claim the entry is keyed on: `session` (`sid`), `subject` (`sub`), `agent` (the stable agent id), `token` (`jti`). */
  readonly kind: 'session' | 'subject' | 'agent' | 'token';
  readonly issuer: string;
  /** The `sid`, `sub`, agent id or `jti`. */
  readonly value: string;
  /** For a session or agent entry of one user only (a CAEP complex subject): that `sub`. */
  readonly subject?: string;
  /** Only tokens issued before this instant (epoch ms) are matched; absent: every token. */
  readonly issuedBefore?: number;
  /** `ssf` (a Shared Signals event), `service` (`RevocationService.revoke`), or what the app passed. */
  readonly source: string;
  /** For `ssf`: the SET's `jti` (RFC 8417 §2.2). */
  readonly setId?: string;
  /** For `ssf`: the SET's `txn`, the transmitter's transaction id (SSF 1.0 §4.1.9), when it has one. */
  readonly txn?: string;
}

/** The parts of a revocation-list entry {@link revocationMatchOf} reads (structural: the decision core imports no revocation code). */
export interface RevocationEntryLike {
  readonly kind: RevocationMatch['kind'];
  readonly issuer: string;
  readonly value: string;
  readonly subject?: string;
  readonly issuedBeforeMs?: number;
  readonly source: string;
  /** For an entry from a Shared Signals event: the SET's `jti` and `txn`, as fields (never parsed from `source`). */
  readonly setId?: string;
  readonly txn?: string;
}

/**
 * The {@link RevocationMatch} of a revocation-list entry (catalogue W4): built from the entry's own
 * fields, the SET's `jti` and `txn` included, never parsed back from a text (a `jti` may hold
 * anything, an app's `source` label too). Claim values only; never a token.
 */
export function revocationMatchOf(entry: RevocationEntryLike): RevocationMatch {
  const match: { -readonly [K in keyof RevocationMatch]: RevocationMatch[K] } = { kind: entry.kind, issuer: entry.issuer, value: entry.value, source: entry.source };
  if (entry.subject !== undefined) match.subject = entry.subject;
  if (entry.issuedBeforeMs !== undefined) match.issuedBefore = entry.issuedBeforeMs;
  if (entry.setId !== undefined) match.setId = entry.setId;
  if (entry.txn !== undefined) match.txn = entry.txn;
  return match;
}

/** An entry was applied to this instance's revocation list (taken here, or shared by another instance). @publicApi */
export interface RevocationAppliedEvent {
  readonly type: 'revocation_applied';
  readonly entry: RevocationMatch;
  /** `local`: taken on this instance; `shared`: received from another instance through the feed. */
  readonly origin: 'local' | 'shared';
  /** Open carriers (connections, streams) the entry ended here. */
  readonly carriersEnded: number;
}

/**
 * A token obtained for a call through the zone's token endpoint (RFC 8693 exchange, client
 * credentials, impersonation), or served from a cache (catalogue W5). Never the token.
 * @publicApi
 */
export interface ExchangedEvent {
  readonly type: 'exchanged';
  /** `token_exchange`, `client_credentials`, or `impersonation`. */
  readonly grant: string;
  /** `hit`: served from this instance's cache; `shared`: from the shared store; `miss`: asked of the zone (or joined such a request). */
  readonly cache: 'hit' | 'shared' | 'miss';
  /** The target resource (RFC 8707). */
  readonly resource?: string;
  /** The scopes asked for, as sent (sorted, deduplicated). */
  readonly scopes?: readonly string[];
  /** The zone asked (its issuer); absent on a cache hit that never chose one. */
  readonly zone?: string;
  /** The agent of the verified inbound token the grant acts for (`@Grant`), when there is one. */
  readonly performedBy?: PerformedBy;
  /** The user of that token (`sub`). */
  readonly onBehalfOf?: string;
}

/** Where a refusal names the revocation-list entry that refused it. */
const MATCHED_BY = Symbol('keycard.matched-by');

/**
 * The 401 `invalid_token` "revoked" refusal of a token matched by `entry` (catalogue X, W4): the
 * decision event of the refused call names the entry (`matchedBy`).
 */
export function revokedBy(entry: RevocationEntryLike): InvalidTokenException {
  return Object.assign(new InvalidTokenException('revoked'), { [MATCHED_BY]: revocationMatchOf(entry) });
}

/** The entry a refusal made by {@link revokedBy} names. */
export function matchedByOf(denial: object): RevocationMatch | undefined {
  return (denial as { [MATCHED_BY]?: RevocationMatch })[MATCHED_BY];
}
