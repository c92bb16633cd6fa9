import { createHash } from 'node:crypto';
import type { AgentContext } from '../interfaces/agent-context.interface.js';

/**
 * What a revocation names, always with the issuer: a `client_id`, `sub` or `sid` is unique only at
 * its issuer (RFC 6749 §2.2, catalogue Q18). Give exactly one of `sessionId`, `subject`, `agent`,
 * `tokenId`; `sessionId` or `agent` may come with `subject` (a CAEP complex subject: that user's
 * session only, or that agent acting for that user only).
 * @publicApi
 */
export interface RevocationTarget {
  /** `iss` of the tokens to refuse, exactly as they carry it. */
  readonly issuer: string;
  /** `sid`: one session at the zone. */
  readonly sessionId?: string;
  /** `sub`: every token of one user (with `sessionId`: that session of that user only). */
  readonly subject?: string;
  /** The agent's stable id: `keycard_app_id`, else `client_id` (`AgentContext.agentId`). */
  readonly agent?: string;
  /** `jti`: one token. */
  readonly tokenId?: string;
}

/**
 * A revocation: a target and, optionally, a bound on the tokens it matches.
 * @publicApi
 */
export interface Revocation extends RevocationTarget {
  /**
   * Only tokens issued (`iat`) strictly before this instant are refused, so the tokens the zone
   * issues afterwards (new claims, a new password) are served. @default every matching token
   */
  readonly issuedBefore?: Date;
}

/** How a target matches: which claim it is keyed on. */
export type RevocationKind = 'session' | 'subject' | 'agent' | 'token';

/**
 * One entry of the revocation list, as kept in memory and shared through the feed (JSON-safe).
 * Times are epoch milliseconds.
 */
export interface RevocationEntry {
  readonly kind: RevocationKind;
  readonly issuer: string;
  /** The `sid`, `sub`, agent id or `jti`, per {@link kind}. */
  readonly value: string;
  /** For a session or agent entry of a complex subject: the `sub` the token must also have. */
  readonly subject?: string;
  /** Tokens with `iat` (ms) at or after this are not matched; absent: every matching token. */
  readonly issuedBeforeMs?: number;
  /** When the entry is dropped: taken + the longest token lifetime + clock tolerance (Q35). */
  readonly expiresAtMs: number;
  /** Where it came from: `ssf` (a Shared Signals event), `service` (`RevocationService.revoke`), or the app's own label. */
  readonly source: string;
  /** For `ssf`: the SET's `jti` (RFC 8417 §2.2), as sent. */
  readonly setId?: string;
  /** For `ssf`: the SET's `txn` (SSF 1.0 §4.1.9), when it has one. */
  readonly txn?: string;
}

/** Where an entry came from, as {@link entryOf} records it. */
export interface RevocationProvenance {
  readonly source: string;
  readonly setId?: string;
  readonly txn?: string;
}

const TARGET_FIELDS = ['sessionId', 'subject', 'agent', 'tokenId'] as const;

/** The longest a claim value of a target may be: longer ones cannot be a real token's claim. */
export const MAX_VALUE_LENGTH = 1024;

/**
 * The entry `revocation` makes, validated.
 * @throws TypeError naming the field when the target is not exactly one of the allowed shapes.
 */
export function entryOf(revocation: Revocation, at: { nowMs: number; lifetimeMs: number; from: RevocationProvenance }): RevocationEntry {
  const { kind, value, subject } = keyedOn(revocation);
  const issuedBefore = revocation.issuedBefore?.getTime();
  if (issuedBefore !== undefined && !Number.isFinite(issuedBefore)) throw new TypeError("Revocation: 'issuedBefore' must be a valid Date");
  if (typeof at.from.source !== 'string' || at.from.source.length > MAX_VALUE_LENGTH) throw new TypeError(`Revocation: 'source' must be a string of at most ${MAX_VALUE_LENGTH} characters`);
  const { source, setId, txn } = at.from;
  const entry = { kind, issuer: revocation.issuer, value, subject, issuedBeforeMs: issuedBefore, expiresAtMs: at.nowMs + at.lifetimeMs, source };
  return setId === undefined ? entry : { ...entry, setId, txn };
}

/** Which claim a target is keyed on. @throws TypeError for an invalid target. */
export function keyedOn(target: RevocationTarget): { kind: RevocationKind; value: string; subject?: string } {
  if (!isClaimValue(target?.issuer)) throw new TypeError("Revocation: 'issuer' must be a non-empty string");
  const given = TARGET_FIELDS.filter((field) => target[field] !== undefined);
  for (const field of given) if (!isClaimValue(target[field])) throw new TypeError(`Revocation: '${field}' must be a non-empty string`);
  if (given.length === 2 && target.subject !== undefined && (target.sessionId ?? target.agent) !== undefined) {
    return target.sessionId !== undefined
      ? { kind: 'session', value: target.sessionId, subject: target.subject }
      : { kind: 'agent', value: target.agent!, subject: target.subject };
  }
  if (given.length !== 1) throw new TypeError("Revocation: give exactly one of 'sessionId', 'subject', 'agent', 'tokenId' (or 'sessionId' or 'agent' with 'subject')");
  if (target.sessionId !== undefined) return { kind: 'session', value: target.sessionId };
  if (target.subject !== undefined) return { kind: 'subject', value: target.subject };
  if (target.agent !== undefined) return { kind: 'agent', value: target.agent };
  return { kind: 'token', value: target.tokenId! };
}

function isClaimValue(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH;
}

/** True when `entry` refuses `agent` (its claim, its `iat` bound). Allocation-free. */
export function matches(entry: RevocationEntry, agent: AgentContext): boolean {
  if (entry.subject !== undefined && entry.subject !== agent.subject) return false;
  return entry.issuedBeforeMs === undefined || agent.issuedAt.getTime() < entry.issuedBeforeMs;
}

/**
 * One entry per target: the union of two revocations of it. Without a bound on either, every token
 * is matched; otherwise the later bound. It lives as long as the longer of the two, and names the
 * later revocation as its provenance (`source`, `setId`, `txn`).
 */
export function merged(a: RevocationEntry, b: RevocationEntry): RevocationEntry {
  const issuedBeforeMs = a.issuedBeforeMs === undefined || b.issuedBeforeMs === undefined ? undefined : Math.max(a.issuedBeforeMs, b.issuedBeforeMs);
  return { ...b, issuedBeforeMs, expiresAtMs: Math.max(a.expiresAtMs, b.expiresAtMs) };
}

/**
 * A fixed-length key for an entry's target, for stores (Redis key names): SHA-256 of its parts,
 * JSON-encoded so no claim value containing a separator makes two targets share a key.
 */
export function targetKey(entry: Pick<RevocationEntry, 'kind' | 'issuer' | 'value' | 'subject'>): string {
  return createHash('sha256').update(JSON.stringify([entry.kind, entry.issuer, entry.value, entry.subject ?? null])).digest('base64url');
}

/** True when `value` has the shape of a {@link RevocationEntry} (what a feed hands over is not trusted blindly). */
export function isEntry(value: unknown): value is RevocationEntry {
  const entry = value as RevocationEntry | null;
  return (
    typeof entry === 'object' && entry !== null &&
    (['session', 'subject', 'agent', 'token'] as unknown[]).includes(entry.kind) &&
    isClaimValue(entry.issuer) && isClaimValue(entry.value) &&
    (entry.subject === undefined || isClaimValue(entry.subject)) &&
    (entry.issuedBeforeMs === undefined || Number.isFinite(entry.issuedBeforeMs)) &&
    Number.isFinite(entry.expiresAtMs) && typeof entry.source === 'string' &&
    (entry.setId === undefined || isClaimValue(entry.setId)) &&
    (entry.txn === undefined || isClaimValue(entry.txn))
  );
}

/** True when `entry` refuses `agent`: the same issuer and keyed claim, and {@link matches}. */
export function refuses(entry: RevocationEntry, agent: AgentContext): boolean {
  if (entry.issuer !== agent.issuer || entry.value !== claimOf(entry.kind, agent)) return false;
  return matches(entry, agent);
}

function claimOf(kind: RevocationKind, agent: AgentContext): string | undefined {
  switch (kind) {
    case 'session':
      return agent.sessionId;
    case 'subject':
      return agent.subject;
    case 'agent':
      return agent.agentId;
    case 'token':
      return agent.tokenId;
  }
}
