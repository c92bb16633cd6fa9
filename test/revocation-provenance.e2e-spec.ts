/**
 * Catalogue W4: where a revocation-list entry came from is carried as structured fields (`source`,
 * the SET's `jti` as `setId` and its `txn`), never parsed back from a text. A SET `jti` holding
 * ` txn=`, or an app's own `source` label shaped like the receiver's, must not change what the
 * `revocation_applied` event, the refusal's `matchedBy` and the audit record say. A real app on
 * loopback, the real TestZone as the transmitter, and (for the instance that learns the entry
 * through the feed) a real redis-server.
 */
import { describe, expect, it } from '@jest/globals';
import { DecisionEvents, type DecisionEvent, type KeycardEvent, type RevocationAppliedEvent } from '../lib/index.js';
import { redisUnavailableReason } from './support/redis-server.js';
import { eventually, redisForSuite, revocationSuite, SSF_PROFILE, type RevocationInstance } from './support/revocation-app.js';

const { audience: SSF_AUD, authorization: SECRET, sessionRevoked: SESSION_REVOKED, revocation: SSF } = SSF_PROFILE;
const now = () => Math.floor(Date.now() / 1000);
const describeRedis = redisUnavailableReason() === undefined ? describe : describe.skip;

const suite = revocationSuite();

function observed(at: RevocationInstance): KeycardEvent[] {
  const events: KeycardEvent[] = [];
  at.app.get(DecisionEvents).observe((event) => events.push(event));
  return events;
}

const applied = (events: KeycardEvent[]) => events.filter((e): e is RevocationAppliedEvent => e.type === 'revocation_applied');
const revoked = (events: KeycardEvent[]) => events.filter((e) => e.type === 'revoked') as DecisionEvent[];
const audit = (at: RevocationInstance) => at.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

/** Pushes a session-revoked SET for `sid` with the given `jti` and `txn`. */
async function pushSet(at: RevocationInstance, sid: string, ids: { jti: string; txn?: string }): Promise<void> {
  const tx = suite.zone.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${at.url}/ssf/events`, authorization: SECRET });
  const set = tx.set(SESSION_REVOKED, { event_timestamp: now(), initiating_entity: 'admin' }, { format: 'opaque', id: sid }, { jti: ids.jti, txn: ids.txn });
  expect((await tx.push(set)).status).toBe(202);
}

describe('§W W4 the provenance of a revocation entry is structured', () => {
  it('W4 a SET whose jti holds " txn=": the event, matchedBy and the audit record carry the jti and txn exactly as sent', async () => {
    const at = await suite.instance({ revocation: SSF });
    const events = observed(at);
    await pushSet(at, 'sid-w4', { jti: 'set-1 txn=forged', txn: 'txn-1' });
    const token = suite.zone.issueToken({ scope: 'orders:read', sid: 'sid-w4', iat: now() - 5 });
    expect((await at.get(token)).status).toBe(401);
    const [entry] = applied(events).map((e) => e.entry);
    expect(entry).toEqual({ kind: 'session', issuer: suite.zone.issuer, value: 'sid-w4', source: 'ssf', setId: 'set-1 txn=forged', txn: 'txn-1' });
    expect(revoked(events)[0]?.matchedBy).toEqual(entry);
    expect(audit(at).find((line) => line.type === 'revoked')?.matchedBy).toEqual(entry);
  });

  it('W4 a SET without txn: setId only; a revocation by the app with a source label shaped like the receiver\'s is the app\'s label, never an SSF entry', async () => {
    const at = await suite.instance({ revocation: SSF });
    const events = observed(at);
    await pushSet(at, 'sid-a', { jti: 'set-2' });
    await at.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-b' }, 'ssf jti=forged txn=t');
    const [fromSet, fromApp] = applied(events).map((e) => e.entry);
    expect(fromSet).toEqual({ kind: 'session', issuer: suite.zone.issuer, value: 'sid-a', source: 'ssf', setId: 'set-2' });
    expect(fromApp).toEqual({ kind: 'session', issuer: suite.zone.issuer, value: 'sid-b', source: 'ssf jti=forged txn=t' });
    const token = suite.zone.issueToken({ scope: 'orders:read', sid: 'sid-b' });
    expect((await at.get(token)).status).toBe(401);
    expect(revoked(events)[0]?.matchedBy).toEqual(fromApp);
    expect((await at.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-c' })).source).toBe('service');
  });
});

describeRedis('§W W4 provenance across instances (real redis-server)', () => {
  const redis = redisForSuite();

  it('W4 the instance that learns the entry through Redis publishes the same entry (origin shared), with the SET jti and txn', async () => {
    const a = await suite.instance({ revocation: SSF, redisUrl: redis.url });
    const b = await suite.instance({ revocation: SSF, redisUrl: redis.url });
    const onA = observed(a);
    const onB = observed(b);
    await pushSet(a, 'sid-r', { jti: 'set-3 txn=x', txn: 'txn-3' });
    await eventually(() => applied(onB).length === 1);
    expect(applied(onB)[0]).toMatchObject({ origin: 'shared', entry: applied(onA)[0]!.entry });
    expect(applied(onB)[0]!.entry).toMatchObject({ source: 'ssf', setId: 'set-3 txn=x', txn: 'txn-3' });
  });
});
