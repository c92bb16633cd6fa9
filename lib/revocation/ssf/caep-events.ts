import { MAX_VALUE_LENGTH, type Revocation } from '../revocation.js';
import { SSF_DESCRIPTIONS as D, SsfError } from './ssf-error.js';
import type { VerifiedSet } from './set-verifier.js';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const SSF = 'https://schemas.openid.net/secevent/ssf/event-type/';
export const EVENT_TYPES = {
  sessionRevoked: `${CAEP}session-revoked`,
  credentialChange: `${CAEP}credential-change`,
  tokenClaimsChange: `${CAEP}token-claims-change`,
  verification: `${SSF}verification`,
  streamUpdated: `${SSF}stream-updated`,
} as const;

/** What one SET asks of this API (decision Q34). */
export type SetEffect =
  | { readonly kind: 'revoke'; readonly revocations: readonly Revocation[] }
  | { readonly kind: 'verification'; readonly streamId: string; readonly state?: string }
  | { readonly kind: 'stream'; readonly streamId?: string; readonly status: string }
  /** A well-formed event this receiver does not act on (SSF 1.0 §4.2.3), or a subject it cannot match. */
  | { readonly kind: 'none'; readonly log: string };

const CHANGE_TYPES = new Set(['create', 'revoke', 'update', 'delete']);

/**
 * The effect of a verified SET at a resource server (Q34): **session-revoked** refuses the session
 * (`(iss, sid)`, or `(iss, sid, sub)` for a complex subject), or a user's tokens issued before
 * `event_timestamp`; **credential-change** (`update`, `revoke`, `delete`) and
 * **token-claims-change** refuse the matched tokens issued before the event. `tokenIssuer` is the
 * `iss` of the tokens the subjects belong to; a subject naming another issuer is `access_denied`.
 * @throws SsfError `invalid_request` for an event that does not conform to its definition.
 */
export function effectOf(set: VerifiedSet, judged: { readonly tokenIssuer: string; readonly latestMs: number }): SetEffect {
  const { tokenIssuer } = judged;
  const at = eventTime(set, judged.latestMs);
  switch (set.eventType) {
    case EVENT_TYPES.sessionRevoked:
      return revokeOrNone(sessionTargets(set.subject, tokenIssuer, at));
    case EVENT_TYPES.credentialChange: {
      const { credential_type: credential, change_type: change } = set.event;
      if (typeof credential !== 'string' || typeof change !== 'string' || !CHANGE_TYPES.has(change)) throw new SsfError('invalid_request', D.events);
      if (change === 'create') return { kind: 'none', log: 'ssf_event_no_effect change_type=create' };
      return revokeOrNone(userTargets(set.subject, tokenIssuer, at));
    }
    case EVENT_TYPES.tokenClaimsChange:
      if (typeof set.event.claims !== 'object' || set.event.claims === null) throw new SsfError('invalid_request', D.events);
      return revokeOrNone(tokenTargets(set.subject, tokenIssuer, at));
    case EVENT_TYPES.verification:
      return verificationOf(set);
    case EVENT_TYPES.streamUpdated: {
      const { status } = set.event;
      if (typeof status !== 'string') throw new SsfError('invalid_request', D.events);
      return { kind: 'stream', status, streamId: opaqueId(set.subject) };
    }
    default:
      return { kind: 'none', log: 'ssf_event_ignored' };
  }
}

function revokeOrNone(revocations: readonly Revocation[]): SetEffect {
  return revocations.length === 0 ? { kind: 'none', log: 'ssf_subject_unmatched' } : { kind: 'revoke', revocations };
}

/**
 * `event_timestamp` (CAEP 1.0 §2), else the SET's `iat`: tokens issued before it are refused. Like
 * `iat` (Q33), an event after `latestMs` (now + the leeway) has not happened: refused, as is a
 * number that is no time at all.
 */
function eventTime(set: VerifiedSet, latestMs: number): Date {
  const stamp = set.event.event_timestamp;
  if (stamp !== undefined && (typeof stamp !== 'number' || !Number.isFinite(stamp) || stamp * 1000 > latestMs)) throw new SsfError('invalid_request', D.events);
  return new Date(stamp === undefined ? set.issuedAtMs : stamp * 1000);
}

/** A subject's identifier: a non-empty string no longer than a token's claim can be. */
function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_VALUE_LENGTH;
}

type Subject = Record<string, unknown>;

function asSubject(value: unknown): Subject {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as Subject).format !== 'string') {
    throw new SsfError('invalid_request', D.events);
  }
  return value as Subject;
}

/** The `sub` of an `iss_sub` subject of `tokenIssuer`. @throws access_denied for another issuer's subject. */
function userOf(subject: Subject, tokenIssuer: string): string {
  const { iss, sub } = subject;
  if (typeof iss !== 'string' || !isId(sub)) throw new SsfError('invalid_request', D.events);
  if (iss !== tokenIssuer) throw new SsfError('access_denied', D.subject);
  return sub;
}

/** session-revoked: a session (opaque id), a user's session (complex), or a user's tokens before `at` (iss_sub). */
function sessionTargets(value: unknown, issuer: string, at: Date): Revocation[] {
  const subject = asSubject(value);
  switch (subject.format) {
    case 'opaque':
      return [{ issuer, sessionId: idOf(subject) }];
    case 'iss_sub':
      return [{ issuer, subject: userOf(subject, issuer), issuedBefore: at }];
    case 'complex': {
      const session = subject.session === undefined ? undefined : idOf(asSubject(subject.session));
      const user = subject.user === undefined ? undefined : userOf(asSubject(subject.user), issuer);
      // SSF 1.0 §3.3 `application`: the agent (client) whose sessions of that user end.
      const agent = subject.application === undefined ? undefined : idOf(asSubject(subject.application));
      if (session !== undefined) return [{ issuer, sessionId: session, subject: user }];
      if (agent !== undefined) return [{ issuer, agent, subject: user, issuedBefore: at }];
      return user === undefined ? [] : [{ issuer, subject: user, issuedBefore: at }];
    }
    default:
      return [];
  }
}

/** credential-change: the user's tokens issued before `at` (iss_sub, or the user of a complex subject). */
function userTargets(value: unknown, issuer: string, at: Date): Revocation[] {
  const subject = asSubject(value);
  const user = subject.format === 'iss_sub' ? subject : subject.format === 'complex' && subject.user !== undefined ? asSubject(subject.user) : undefined;
  if (user?.format !== 'iss_sub') return [];
  return [{ issuer, subject: userOf(user, issuer), issuedBefore: at }];
}

/** token-claims-change: one token (jwt_id), or the user's tokens issued before `at`. */
function tokenTargets(value: unknown, issuer: string, at: Date): Revocation[] {
  const subject = asSubject(value);
  if (subject.format !== 'jwt_id') return userTargets(subject, issuer, at);
  const { iss, jti } = subject;
  if (typeof iss !== 'string' || !isId(jti)) throw new SsfError('invalid_request', D.events);
  if (iss !== issuer) throw new SsfError('access_denied', D.subject);
  return [{ issuer, tokenId: jti }];
}

function idOf(subject: Subject): string {
  if (subject.format !== 'opaque' || !isId(subject.id)) throw new SsfError('invalid_request', D.events);
  return subject.id;
}

function opaqueId(value: unknown): string | undefined {
  const subject = value as Subject | undefined;
  return subject?.format === 'opaque' && typeof subject.id === 'string' ? subject.id : undefined;
}

/** SSF 1.0 §8.1.4: the stream id is the opaque subject; `state` echoes the receiver's request. */
function verificationOf(set: VerifiedSet): SetEffect {
  const streamId = opaqueId(set.subject);
  if (streamId === undefined) throw new SsfError('invalid_request', D.stream);
  const { state } = set.event;
  if (state !== undefined && typeof state !== 'string') throw new SsfError('invalid_request', D.events);
  return { kind: 'verification', streamId, state };
}
