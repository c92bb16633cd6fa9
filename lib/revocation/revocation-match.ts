import { matchedByOf, revokedBy, type RevocationMatch } from '../decision/decision-event-kinds.js';
import type { InvalidTokenException } from '../resource-server/keycard.exceptions.js';
import type { RevocationEntry } from './revocation.js';

/**
 * An entry as decision events name it (catalogue W4): the `revocation_applied` event's `entry` and
 * the `matchedBy` of each refusal it causes. Built from the entry's own fields, the SET's `jti` and
 * `txn` included, never parsed back from a text (a `jti` may hold anything, an app's `source` label
 * too). Claim values only; never a token.
 */
export function revocationMatch(entry: RevocationEntry): RevocationMatch {
  const match: { -readonly [K in keyof RevocationMatch]: RevocationMatch[K] } = { kind: entry.kind, issuer: entry.issuer, value: entry.value, source: entry.source };
  if (entry.subject !== undefined) match.subject = entry.subject;
  if (entry.issuedBeforeMs !== undefined) match.issuedBefore = entry.issuedBeforeMs;
  if (entry.setId !== undefined) match.setId = entry.setId;
  if (entry.txn !== undefined) match.txn = entry.txn;
  return match;
}

/**
 * The 401 `invalid_token` "revoked" refusal of a token `entry` matches, naming the entry as
 * {@link revocationMatch} does.
 *
 * Until the decision core's `revocationMatchOf` (lib/decision/decision-event-kinds.ts) reads `setId`
 * and `txn` from the entry instead of parsing `source` (a change asked of the decision core's
 * owner), the match it attaches is replaced here by the structured one: it is a fresh object
 * no one else holds yet. Afterwards this is `revokedBy(entry)`.
 */
export function refusalBy(entry: RevocationEntry): InvalidTokenException {
  const denial = revokedBy(entry);
  const attached = matchedByOf(denial) as Record<string, unknown> | undefined;
  if (attached !== undefined) {
    for (const key of Object.keys(attached)) delete attached[key];
    Object.assign(attached, revocationMatch(entry));
  }
  return denial;
}
