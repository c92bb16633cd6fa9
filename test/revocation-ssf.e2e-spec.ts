/**
 * Catalogue §X, the Shared Signals receiver (X1–X4, X6–X20): the zone (`TestZone` as an SSF
 * transmitter) pushes Security Event Tokens (RFC 8417, RFC 8935) to the API, which verifies each
 * one and applies CAEP session-revoked, credential-change and token-claims-change to the
 * revocation list. Two instances share a real redis-server where the row says so.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { createPublicKey, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { SsfReceiver } from '../lib/index.js';
import { SSF_DESCRIPTIONS } from '../lib/revocation/ssf/ssf-error.js';
import { TestZone, type SsfTransmitter } from '../lib/testing/index.js';
import { startCountingListener } from './support/counting-listener.js';
import { expectOutcome } from './support/denials.js';
import { hmacToken, PRM, R } from './support/forge.js';
import { redisUnavailableReason } from './support/redis-server.js';
import { eventually, LMAX_SECONDS, redisForSuite, startInstance, type RevocationInstance } from './support/revocation-app.js';

const SSF_AUD = 'https://api.example.com/ssf';
const SECRET = 'Bearer receiver-secret-0123456789';
const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const SESSION_REVOKED = `${CAEP}session-revoked`;
const CREDENTIAL_CHANGE = `${CAEP}credential-change`;
const TOKEN_CLAIMS_CHANGE = `${CAEP}token-claims-change`;
const VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification';
const STREAM_UPDATED = 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated';
const STREAM_ID = 'stream-1';
const describeRedis = redisUnavailableReason() === undefined ? describe : describe.skip;

let zone: TestZone;
let zone2: TestZone;
const running: RevocationInstance[] = [];

beforeAll(async () => {
  zone = await TestZone.start({ audience: R });
  zone2 = await TestZone.start({ audience: R });
});
afterAll(async () => {
  await zone?.stop();
  await zone2?.stop();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((instance) => instance.close()));
});

type SsfOptions = { jwksUri?: string; redisUrl?: string };

async function receiver(options: SsfOptions = {}): Promise<{ at: RevocationInstance; tx: SsfTransmitter }> {
  const at = await startInstance(zone, {
    redisUrl: options.redisUrl,
    keycard: { zones: [zone.issuer, zone2.issuer], zoneUrl: undefined },
    revocation: { ssf: { audience: SSF_AUD, push: { authorization: SECRET }, streamId: STREAM_ID, jwksUri: options.jwksUri } },
  });
  running.push(at);
  return { at, tx: zone.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${at.url}/ssf/events`, authorization: SECRET }) };
}

const now = () => Math.floor(Date.now() / 1000);
const S0_SUBJECT = { format: 'complex', session: { format: 'opaque', id: 'sid-1' }, user: { format: 'iss_sub', iss: '', sub: 'user-1' } };
const s0Subject = () => ({ ...S0_SUBJECT, user: { ...S0_SUBJECT.user, iss: zone.issuer } });
const revokedEvent = () => ({ event_timestamp: now(), initiating_entity: 'admin', reason_admin: { en: 'test' } });

/** `S0` of the catalogue profile, with `claims` added or (with `undefined`) removed. */
function s0(tx: SsfTransmitter, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  return tx.set(SESSION_REVOKED, revokedEvent(), s0Subject(), claims, { header });
}

function token(claims: Record<string, unknown> = {}): string {
  return zone.issueToken({ scope: 'orders:read', ...claims });
}

async function status(at: RevocationInstance, claims: Record<string, unknown>): Promise<number> {
  return (await at.get(token(claims))).status;
}

/** 202 with an empty body (RFC 8935 §2.2). */
function expectAccepted(answer: { status: number; body: string }): void {
  expect(answer).toEqual({ status: 202, body: '' });
}

/** **SSF(err)**: 400, JSON `{ err, description }` with a fixed description, and no change to the list. */
function expectSsfError(answer: { status: number; body: string }, err: string, at: RevocationInstance, entriesBefore = 0): void {
  expect({ status: answer.status, err: (JSON.parse(answer.body) as { err: string }).err }).toEqual({ status: 400, err });
  const { description } = JSON.parse(answer.body) as { description: string };
  expect(Object.values(SSF_DESCRIPTIONS)).toContain(description);
  expect(at.revocations.status().entries).toBe(entriesBefore);
}

const lines = (at: RevocationInstance, text: string) => at.logger.lines.filter((line) => line.includes(text));

describe('§X SSF push receiver, one instance', () => {
  let at: RevocationInstance;
  let tx: SsfTransmitter;
  beforeEach(async () => {
    ({ at, tx } = await receiver());
  });

  it('X2 no Authorization, a wrong one, or the right value in another case → SSF(authentication_failed); the list is unchanged', async () => {
    const set = s0(tx);
    expectSsfError(await tx.push(set, { Authorization: undefined }), 'authentication_failed', at);
    expectSsfError(await tx.push(set, { Authorization: 'Bearer wrong' }), 'authentication_failed', at);
    expectSsfError(await tx.push(set, { Authorization: SECRET.toUpperCase() }), 'authentication_failed', at);
    expect(at.logger.lines.some((line) => line.includes('receiver-secret'))).toBe(false);
    expectAccepted(await tx.push(set)); // the jti was not burnt by the refused deliveries
  });

  it('X3 Content-Type application/json; a body not-a-jwt; a 5-segment JWE → SSF(invalid_request); a 100 KB body → 413', async () => {
    expectSsfError(await tx.push(s0(tx), { 'Content-Type': 'application/json' }), 'invalid_request', at);
    expectSsfError(await tx.push('not-a-jwt'), 'invalid_request', at);
    const jwe = ['eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ', 'a', 'b', 'c', 'd'].join('.');
    expectSsfError(await tx.push(jwe), 'invalid_request', at);
    const huge = await tx.push('x'.repeat(100_000));
    expect(huge.status).toBe(413);
    expect(at.revocations.status().entries).toBe(0);
  });

  it('X4 typ absent, "JWT" or "at+jwt" → SSF(invalid_request)', async () => {
    for (const typ of [undefined, 'JWT', 'at+jwt']) expectSsfError(await tx.push(s0(tx, {}, { typ })), 'invalid_request', at);
    expectAccepted(await tx.push(s0(tx, {}, { typ: 'application/secevent+jwt' })));
  });

  it('X6 unknown kid, alg none, HS256 keyed with the public key, an RSA-1024 key → SSF(invalid_key); a tampered payload → SSF(authentication_failed)', async () => {
    expectSsfError(await tx.push(s0(tx, {}, { kid: 'nobody' })), 'invalid_key', at);
    const [h, p] = s0(tx).split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'secevent+jwt' })).toString('base64url')}.${p}.`;
    expectSsfError(await tx.push(none), 'invalid_key', at);
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const pem = createPublicKey(zone.key('rs1').privateKey).export({ type: 'spki', format: 'pem' });
    expectSsfError(await tx.push(hmacToken({ alg: 'HS256', typ: 'secevent+jwt', kid: 'rs1' }, claims, pem)), 'invalid_key', at);
    zone.addKey(TestZone.generateKey('weak', 'RS256', 1024));
    expectSsfError(await tx.push(tx.set(SESSION_REVOKED, revokedEvent(), s0Subject(), {}, { kid: 'weak' })), 'invalid_key', at);
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub_id: { format: 'opaque', id: 'sid-9' } })).toString('base64url')}.${s0(tx).split('.')[2]}`;
    expectSsfError(await tx.push(tampered), 'authentication_failed', at);
    zone.removeKey('weak');
  });

  it('X8 iss = I2 (a trusted zone, not the transmitter) or I + "/" → SSF(invalid_issuer)', async () => {
    const fromZone2 = zone2.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${at.url}/ssf/events`, authorization: SECRET });
    expectSsfError(await fromZone2.push(fromZone2.set(SESSION_REVOKED, revokedEvent(), { format: 'opaque', id: 'sid-1' })), 'invalid_issuer', at);
    expectSsfError(await tx.push(s0(tx, { iss: `${zone.issuer}/` })), 'invalid_issuer', at);
  });

  it('X9 aud missing, another audience → SSF(invalid_audience); an array naming this receiver → 202, applied', async () => {
    expectSsfError(await tx.push(s0(tx, { aud: undefined })), 'invalid_audience', at);
    expectSsfError(await tx.push(s0(tx, { aud: 'https://other.example/ssf' })), 'invalid_audience', at);
    expectAccepted(await tx.push(s0(tx, { aud: ['https://other.example', SSF_AUD] })));
    expect(await status(at, { sid: 'sid-1', sub: 'user-1' })).toBe(401);
  });

  it('X10 an exp claim, a top-level sub claim → SSF(invalid_request)', async () => {
    expectSsfError(await tx.push(s0(tx, { exp: now() + 60 })), 'invalid_request', at);
    expectSsfError(await tx.push(s0(tx, { sub: 'user-1' })), 'invalid_request', at);
  });

  it('X11 iat 61 s ahead → SSF(invalid_request); older than Lmax → 202 with no effect and one log line; iat missing → SSF(invalid_request)', async () => {
    // 61 s ahead of the receiver's clock when it checks: rounded up, so the second `now()` truncates
    // (up to 1 s) never brings it back within the 60 s tolerance.
    expectSsfError(await tx.push(s0(tx, { iat: Math.ceil(Date.now() / 1000) + 61 })), 'invalid_request', at);
    expectAccepted(await tx.push(s0(tx, { iat: now() - (LMAX_SECONDS + 120) })));
    expect(at.revocations.status().entries).toBe(0);
    expect(lines(at, 'ssf_set_stale')).toHaveLength(1);
    expectSsfError(await tx.push(s0(tx, { iat: undefined })), 'invalid_request', at);
  });

  it('X13 events missing, {}, two events, credential-change without change_type → SSF(invalid_request)', async () => {
    expectSsfError(await tx.push(s0(tx, { events: undefined })), 'invalid_request', at);
    expectSsfError(await tx.push(s0(tx, { events: {} })), 'invalid_request', at);
    const two = { [SESSION_REVOKED]: revokedEvent(), [CREDENTIAL_CHANGE]: { credential_type: 'password', change_type: 'update' } };
    expectSsfError(await tx.push(s0(tx, { events: two })), 'invalid_request', at);
    const user = { format: 'iss_sub', iss: zone.issuer, sub: 'user-1' };
    expectSsfError(await tx.push(tx.set(CREDENTIAL_CHANGE, { credential_type: 'password', event_timestamp: now() }, user)), 'invalid_request', at);
  });

  it('X14 an event type the receiver does not handle → 202, no effect, one ssf_event_ignored line with the type URI', async () => {
    for (const type of ['https://schemas.openid.net/secevent/risc/event-type/account-disabled', 'https://example.com/made-up']) {
      expectAccepted(await tx.push(tx.set(type, {}, { format: 'iss_sub', iss: zone.issuer, sub: 'user-1' })));
      expect(lines(at, `ssf_event_ignored type=${type}`)).toHaveLength(1);
    }
    expect(at.revocations.status().entries).toBe(0);
  });

  it('X15 session-revoked subjects: opaque session; complex session + user; iss_sub user (tokens before event_timestamp); email → no effect', async () => {
    expectAccepted(await tx.push(tx.set(SESSION_REVOKED, revokedEvent(), { format: 'opaque', id: 'sid-1' })));
    expect(await status(at, { sid: 'sid-1', sub: 'user-7' })).toBe(401);
    expectAccepted(await tx.push(tx.set(SESSION_REVOKED, revokedEvent(), { format: 'complex', session: { format: 'opaque', id: 'sid-3' }, user: { format: 'iss_sub', iss: zone.issuer, sub: 'user-2' } })));
    expect(await status(at, { sid: 'sid-3', sub: 'user-2' })).toBe(401);
    expect(await status(at, { sid: 'sid-3', sub: 'user-1' })).toBe(200);
    const before = token({ sub: 'user-4', iat: now() - 10 });
    expectAccepted(await tx.push(tx.set(SESSION_REVOKED, { ...revokedEvent(), event_timestamp: now() - 5 }, { format: 'iss_sub', iss: zone.issuer, sub: 'user-4' })));
    expectOutcome(await at.get(before), '401 IT scope=orders:read', PRM, [before], at.logger.lines);
    expect(await status(at, { sub: 'user-4', iat: now() })).toBe(200);
    const entries = at.revocations.status().entries;
    expectAccepted(await tx.push(tx.set(SESSION_REVOKED, revokedEvent(), { format: 'email', email: 'a@b' })));
    expect(at.revocations.status().entries).toBe(entries);
    expect(lines(at, 'ssf_subject_unmatched')).toHaveLength(1);
  });

  it('X15 a complex subject naming the application (agent) and the user refuses that agent\'s tokens for that user only', async () => {
    const agentB = token({ sub: 'user-6', client_id: 'agent-b' });
    expectAccepted(await tx.push(tx.agentSessionsRevoked('agent-b', 'user-6')));
    expectOutcome(await at.get(agentB), '401 IT scope=orders:read', PRM, [agentB], at.logger.lines);
    expect(await status(at, { sub: 'user-6', client_id: 'agent-a' })).toBe(200);
    expect(await status(at, { sub: 'user-7', client_id: 'agent-b' })).toBe(200);
  });

  it('X16 an iss_sub subject naming another issuer (I2) → SSF(access_denied); I2 tokens unaffected', async () => {
    const foreign = { format: 'iss_sub', iss: zone2.issuer, sub: 'user-1' };
    expectSsfError(await tx.push(tx.set(SESSION_REVOKED, revokedEvent(), foreign)), 'access_denied', at);
    expect((await at.get(zone2.issueToken({ scope: 'orders:read', sub: 'user-1' }))).status).toBe(200);
  });

  it('X17 credential-change update / revoke / delete refuses the user\'s tokens issued before the event; create has no effect', async () => {
    for (const [i, change] of ['update', 'revoke', 'delete'].entries()) {
      const user = `cred-${i}`;
      const old = token({ sub: user, iat: now() - 10 });
      expectAccepted(await tx.push(tx.set(CREDENTIAL_CHANGE, { credential_type: 'password', change_type: change, event_timestamp: now() - 5 }, { format: 'iss_sub', iss: zone.issuer, sub: user })));
      expect((await at.get(old)).status).toBe(401);
      expect(await status(at, { sub: user, iat: now() })).toBe(200);
    }
    const entries = at.revocations.status().entries;
    expectAccepted(await tx.push(tx.set(CREDENTIAL_CHANGE, { credential_type: 'password', change_type: 'create', event_timestamp: now() }, { format: 'iss_sub', iss: zone.issuer, sub: 'user-1' })));
    expect(at.revocations.status().entries).toBe(entries);
  });

  it('X18 token-claims-change by jwt_id refuses that token; by iss_sub every token of the user issued before the event', async () => {
    const jti = randomUUID();
    const one = token({ jti, sub: 'claims-1' });
    const sibling = token({ sub: 'claims-1', iat: now() - 10 });
    expectAccepted(await tx.push(tx.set(TOKEN_CLAIMS_CHANGE, { claims: { role: 'ro-admin' }, event_timestamp: now() }, { format: 'jwt_id', iss: zone.issuer, jti })));
    expectOutcome(await at.get(one), '401 IT scope=orders:read', PRM, [one], at.logger.lines);
    expect((await at.get(sibling)).status).toBe(200);
    expectAccepted(await tx.push(tx.set(TOKEN_CLAIMS_CHANGE, { claims: { role: 'ro-admin' }, event_timestamp: now() - 5 }, { format: 'iss_sub', iss: zone.issuer, sub: 'claims-1' })));
    expect((await at.get(sibling)).status).toBe(401);
    expect(await status(at, { sub: 'claims-1', iat: now() })).toBe(200);
  });

  it('X19 verification event: the requested state → 202 and lastVerifiedAt; a wrong state → SSF(invalid_state); an unknown stream → SSF(invalid_request)', async () => {
    const ssf = at.app.get(SsfReceiver);
    ssf.expectVerification('state-42');
    expectSsfError(await tx.push(tx.set(VERIFICATION, { state: 'state-41' }, { format: 'opaque', id: STREAM_ID })), 'invalid_state', at);
    expectSsfError(await tx.push(tx.set(VERIFICATION, { state: 'state-42' }, { format: 'opaque', id: 'stream-9' })), 'invalid_request', at);
    expect(at.revocations.status().lastVerifiedAt).toBeUndefined();
    expectAccepted(await tx.push(tx.set(VERIFICATION, { state: 'state-42' }, { format: 'opaque', id: STREAM_ID })));
    expect(at.revocations.status()).toMatchObject({ entries: 0, lastVerifiedAt: expect.any(Date) });
  });

  it('X20 stream-updated paused: degraded, freshness routes 503, others served; enabled: normal again', async () => {
    const t0 = token();
    expectAccepted(await tx.push(tx.set(STREAM_UPDATED, { status: 'paused' }, { format: 'opaque', id: STREAM_ID })));
    expect(at.revocations.status()).toMatchObject({ status: 'degraded', reasons: ['ssf_stream_paused'] });
    expectOutcome(await at.get(t0, '/fresh'), '503 RA', PRM, [t0], at.logger.lines);
    expect((await at.get(t0)).status).toBe(200);
    expectAccepted(await tx.push(tx.set(STREAM_UPDATED, { status: 'enabled' }, { format: 'opaque', id: STREAM_ID })));
    expect(at.revocations.status().status).toBe('up');
    expect((await at.get(t0, '/fresh')).status).toBe(200);
  });
});

describe('§X SSF receiver with its own transmitter key set', () => {
  let jwks: Server;
  let jwksUrl: string;
  beforeAll(async () => {
    const key = TestZone.generateKey('tx1', 'RS256');
    const jwk = { ...createPublicKey(key.privateKey).export({ format: 'jwk' }), kid: 'tx1', alg: 'RS256', use: 'sig' };
    jwks = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/jwks.json`;
  });
  afterAll(() => new Promise<void>((resolve) => jwks.close(() => resolve())));

  it('X7 a SET signed by the zone\'s rs1, not in the transmitter JWKS → SSF(invalid_key); keys never come from jku/jwk/x5u (OUT(attacker)=0)', async () => {
    const { at, tx } = await receiver({ jwksUri: jwksUrl });
    expectSsfError(await tx.push(s0(tx)), 'invalid_key', at);
    const attacker = await startCountingListener();
    try {
      const jwk = createPublicKey(zone.key('rs1').privateKey).export({ format: 'jwk' });
      expectSsfError(await tx.push(s0(tx, {}, { jku: attacker.url, x5u: attacker.url, jwk })), 'invalid_key', at);
      expect(attacker.hits()).toBe(0);
    } finally {
      await attacker.close();
    }
  });
});

describeRedis('§X SSF receiver across instances (real redis-server)', () => {
  const redis = redisForSuite();

  it('X1 push S0 to A → 202, empty body; sid-1 refused on A and on B within D; sid-2 of the same user served', async () => {
    const { at: a, tx } = await receiver({ redisUrl: redis.url });
    const { at: b } = await receiver({ redisUrl: redis.url });
    const sid1 = token({ sid: 'sid-1', sub: 'user-1' });
    expect((await b.get(sid1)).status).toBe(200);
    expectAccepted(await tx.push(s0(tx)));
    expectOutcome(await a.get(sid1), '401 IT scope=orders:read', PRM, [sid1], a.logger.lines);
    expect((await a.get(sid1)).json).toMatchObject({ error_description: 'The access token has been revoked' });
    await eventually(async () => (await b.get(sid1)).status === 401);
    expectOutcome(await b.get(sid1), '401 IT scope=orders:read', PRM, [sid1], b.logger.lines);
    expect(await status(a, { sid: 'sid-2', sub: 'user-1' })).toBe(200);
    expect(await status(b, { sid: 'sid-2', sub: 'user-1' })).toBe(200);
    expect(lines(a, 'revocation_applied kind=session')[0]).toMatch(/source=ssf jti=\S+ txn=\S+/);
  });

  it('X12 the same S0 twice to A and once to B → 202 ×3, one revocation applied in total; another SET reusing its jti → SSF(invalid_request)', async () => {
    const { at: a, tx } = await receiver({ redisUrl: redis.url });
    const { at: b } = await receiver({ redisUrl: redis.url });
    const txB = zone.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${b.url}/ssf/events`, authorization: SECRET });
    let applied = 0;
    for (const instance of [a, b]) instance.revocations.onApplied((_entry, origin) => (applied += origin === 'local' ? 1 : 0));
    const set = s0(tx);
    expectAccepted(await tx.push(set));
    expectAccepted(await tx.push(set));
    expectAccepted(await txB.push(set));
    expect(applied).toBe(1);
    const jti = (JSON.parse(Buffer.from(set.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
    const reuse = tx.set(SESSION_REVOKED, revokedEvent(), { format: 'opaque', id: 'sid-5' }, { jti });
    const answer = await txB.push(reuse);
    expect({ status: answer.status, err: (JSON.parse(answer.body) as { err: string }).err }).toEqual({ status: 400, err: 'invalid_request' });
    expect(await status(b, { sid: 'sid-5' })).toBe(200);
  });
});
