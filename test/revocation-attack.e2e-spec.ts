/**
 * Findings of an attack trial of revocation (issue 21), each a test first: the SSF receiver as a
 * hostile or broken transmitter would use it, and introspected opaque tokens. A real Nest app on
 * loopback, the real TestZone as transmitter and authorization server, a real redis-server for the
 * instance that learns an entry through the feed. Every refusal is checked for its answer and that
 * no token or secret reached the answer or the logs.
 */
import { describe, expect, it } from '@jest/globals';
import { expectOutcome } from './support/denials.js';
import { PRM, R } from './support/forge.js';
import { request } from 'node:http';
import { send } from './support/http.js';
import { startApp } from './support/keycard-app.js';
import { redisUnavailableReason } from './support/redis-server.js';
import { eventually, redisForSuite, revocationSuite, SSF_PROFILE, type RevocationInstance } from './support/revocation-app.js';

const { audience: SSF_AUD, authorization: SECRET, sessionRevoked: SESSION_REVOKED, revocation: SSF } = SSF_PROFILE;
const now = () => Math.floor(Date.now() / 1000);
const describeRedis = redisUnavailableReason() === undefined ? describe : describe.skip;

const suite = revocationSuite();

function transmitter(at: RevocationInstance) {
  return suite.zone.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${at.url}/ssf/events`, authorization: SECRET });
}

/** SSF(err) of the catalogue: 400 `{ err, description }`, nothing of the SET or the secret in the logs, no entry added. */
async function expectSsfError(at: RevocationInstance, set: string, err: string): Promise<void> {
  const entries = at.revocations.status().entries;
  const answer = await transmitter(at).push(set);
  expect({ status: answer.status, err: (JSON.parse(answer.body || '{}') as { err?: string }).err }).toEqual({ status: 400, err });
  expect(at.revocations.status().entries).toBe(entries);
  expect(at.logger.lines.some((line) => line.includes(set.split('.')[2]!) || line.includes(SECRET))).toBe(false);
}

describe('attack trial: the SSF receiver', () => {
  it('X6 (crit) a SET naming a critical header extension the receiver does not understand (RFC 7515 §4.1.11), or b64:false → SSF(invalid_request)', async () => {
    const at = await suite.instance({ revocation: SSF });
    const tx = transmitter(at);
    const event = { event_timestamp: now(), initiating_entity: 'admin' };
    await expectSsfError(at, tx.set(SESSION_REVOKED, event, { format: 'opaque', id: 'sid-crit' }, {}, { header: { crit: ['urn:example:x'], 'urn:example:x': 1 } }), 'invalid_request');
    await expectSsfError(at, tx.set(SESSION_REVOKED, event, { format: 'opaque', id: 'sid-b64' }, {}, { header: { crit: ['b64'], b64: false } }), 'invalid_request');
    expect((await tx.push(tx.set(SESSION_REVOKED, event, { format: 'opaque', id: 'sid-ok' }))).status).toBe(202);
  });

  it('X15 a subject whose id is longer than any claim (5 000 characters) → SSF(invalid_request), never 503 (a transmitter retries a 503 for ever)', async () => {
    const at = await suite.instance({ revocation: SSF });
    const tx = transmitter(at);
    const event = { event_timestamp: now(), initiating_entity: 'admin' };
    const long = 'i'.repeat(5000);
    await expectSsfError(at, tx.set(SESSION_REVOKED, event, { format: 'opaque', id: long }), 'invalid_request');
    await expectSsfError(at, tx.set(SESSION_REVOKED, event, { format: 'iss_sub', iss: suite.zone.issuer, sub: long }), 'invalid_request');
    expect(at.logger.levels.error).toEqual([]);
  });

  it('X17 an event_timestamp that is no usable time (1e20, or more than the leeway ahead) → SSF(invalid_request), never 503', async () => {
    const at = await suite.instance({ revocation: SSF });
    const tx = transmitter(at);
    const user = { format: 'iss_sub', iss: suite.zone.issuer, sub: 'user-ts' };
    await expectSsfError(at, tx.set(SESSION_REVOKED, { event_timestamp: 1e20 }, user), 'invalid_request');
    await expectSsfError(at, tx.set(SESSION_REVOKED, { event_timestamp: now() + 3600 }, user), 'invalid_request');
    expect(at.logger.levels.error).toEqual([]);
    const token = suite.zone.issueToken({ scope: 'orders:read', sub: 'user-ts' });
    expect((await at.get(token)).status).toBe(200);
  });
});

/** A raw POST: the answer's status and parsed body. */
function post(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString() || 'null') as unknown }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('attack trial: the SSF push endpoint on Fastify answers as on Express', () => {
  it.each(['fastify', 'express'] as const)('X3 (%s, with X2) unauthenticated → SSF(authentication_failed) whatever the body; authenticated malformed JSON, another or no media type → SSF(invalid_request); 100 KB → 413 in the SSF shape', async (adapter) => {
    const at = await suite.instance({ adapter, revocation: SSF });
    const url = `${at.url}/ssf/events`;
    const ssfError = (err: string) => ({ err, description: expect.any(String) });
    const authFailed = { status: 400, body: ssfError('authentication_failed') };
    expect(await post(url, { 'Content-Type': 'application/json' }, '{"a":')).toEqual(authFailed);
    expect(await post(url, { 'Content-Type': 'application/secevent+jwt' }, 'a'.repeat(100_000))).toEqual(authFailed);
    expect(await post(url, { 'Content-Type': 'application/octet-stream' }, 'a.b.c')).toEqual(authFailed);
    const auth = { Authorization: SECRET };
    const invalid = { status: 400, body: ssfError('invalid_request') };
    expect(await post(url, { ...auth, 'Content-Type': 'application/json' }, '{"a":')).toEqual(invalid);
    expect(await post(url, { ...auth, 'Content-Type': 'application/octet-stream' }, 'a.b.c')).toEqual(invalid);
    expect(await post(url, auth, 'a.b.c')).toEqual(invalid);
    expect(await post(url, { ...auth, 'Content-Type': 'application/secevent+jwt' }, 'a'.repeat(100_000))).toEqual({ status: 413, body: ssfError('invalid_request') });
    const tx = transmitter(at);
    expect(await tx.push(tx.sessionRevoked('sid-fastify'))).toEqual({ status: 202, body: '' });
    expect(at.revocations.status().entries).toBe(1);
    // The app's own routes keep their parsers.
    expect((await at.get(suite.zone.issueToken({ scope: 'orders:read' }))).status).toBe(200);
  });
});

describeRedis('attack trial: the SSF receiver across instances (real redis-server)', () => {
  const redis = redisForSuite();

  it('X1 a SET with a 3 000-character txn: applied on A and on B (the shared entry is not dropped); the txn is not recorded', async () => {
    const a = await suite.instance({ revocation: SSF, redisUrl: redis.url });
    const b = await suite.instance({ revocation: SSF, redisUrl: redis.url });
    const tx = transmitter(a);
    const set = tx.set(SESSION_REVOKED, { event_timestamp: now(), initiating_entity: 'admin' }, { format: 'opaque', id: 'sid-txn' }, { txn: 'x'.repeat(3000) });
    expect((await tx.push(set)).status).toBe(202);
    const token = suite.zone.issueToken({ scope: 'orders:read', sid: 'sid-txn' });
    expectOutcome(await a.get(token), '401 IT scope=orders:read', PRM, [token], a.logger.lines);
    await eventually(async () => (await b.get(token)).status === 401);
    expect([...b.revocations.list.entries()].map((entry) => [entry.value, entry.txn])).toEqual([['sid-txn', undefined]]);
  });
});

describe('attack trial: introspected opaque tokens', () => {
  it('X33 an answer whose token_type is not an access token type (refresh_token, Refresh, the RFC 8693 refresh token URN) → 401 IT; Bearer, bearer or none → 200', async () => {
    const client = { clientId: 'api', clientSecret: 'api-secret-do-not-log' };
    suite.zone.addClient(client);
    const app = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, clientCredentials: client, opaqueTokens: 'introspect' });
    try {
      const answer = { aud: R, scope: 'orders:read', exp: now() + 60 };
      for (const tokenType of ['refresh_token', 'Refresh', 'urn:ietf:params:oauth:token-type:refresh_token', 'id_token']) {
        const token = suite.zone.issueOpaqueToken({ ...answer, token_type: tokenType });
        expectOutcome(await send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]), '401 IT scope=orders:read', PRM, [token, client.clientSecret], app.logger.lines);
      }
      for (const tokenType of ['Bearer', 'bearer', undefined]) {
        const token = suite.zone.issueOpaqueToken({ ...answer, token_type: tokenType });
        expect((await send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]])).status).toBe(200);
      }
    } finally {
      await app.close();
    }
  });
});

describe('attack trial: introspection of JWTs on freshness routes', () => {
  it('X29 the zone answers active about the token but names it a refresh token → 401 IT', async () => {
    const at = await suite.instance();
    const token = suite.zone.issueToken({ scope: 'orders:read' });
    suite.zone.introspection.answerFor(token, { ...suite.zone.verifyOwnToken(token), active: true, token_type: 'refresh_token' });
    expectOutcome(await at.get(token, '/fresh'), '401 IT scope=orders:read', PRM, [token], at.logger.lines);
    suite.zone.introspection.answerFor(token, { ...suite.zone.verifyOwnToken(token), active: true, token_type: 'Bearer' });
    expect((await at.get(token, '/fresh')).status).toBe(200);
  });
});
