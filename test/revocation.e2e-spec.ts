/**
 * Catalogue §X: revocation before `exp` — the revocation list on the decision core, the
 * RevocationService an app's admin code calls, and its propagation between instances through a
 * real redis-server (X5, X23–X27).
 */
import { describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { targetKey } from '../lib/revocation/revocation.js';
import { PRM } from './support/forge.js';
import { expectOutcome } from './support/denials.js';
import { send, type HttpAnswer } from './support/http.js';
import { redisUnavailableReason, startRedis } from './support/redis-server.js';
import { eventually, LMAX_SECONDS, redisForSuite, revocationSuite, type RevocationInstance } from './support/revocation-app.js';

const REVOKED = 'The access token has been revoked';
const noRedis = redisUnavailableReason();
const describeRedis = noRedis === undefined ? describe : describe.skip;

const suite = revocationSuite();
const instance = suite.instance;

function token(claims: Record<string, unknown> = {}): string {
  return suite.zone.issueToken({ scope: 'orders:read', ...claims });
}

/** Refused as revoked: 401 invalid_token with the fixed description, no token in the answer or the logs. */
function expectRevoked(res: HttpAnswer, secret: string, at: RevocationInstance): void {
  expectOutcome(res, '401 IT scope=orders:read', PRM, [secret], at.logger.lines);
  expect((res.json as { error_description?: string }).error_description).toBe(REVOKED);
}

async function refused(at: RevocationInstance, secret: string): Promise<boolean> {
  return (await at.get(secret)).status === 401;
}

const admin = () => suite.zone.issueToken({ scope: 'admin', sub: 'ops', client_id: 'ops-console' });

function post(at: RevocationInstance, path: string, body: unknown): Promise<HttpAnswer> {
  return send(at.url, 'POST', path, [['Authorization', `Bearer ${admin()}`], ['Content-Type', 'application/json']], JSON.stringify(body));
}

describe('§X revocation list, one instance', () => {
  it('X5 a SET sent as an access token to a protected route → 401 invalid_token (a SET is never an access token)', async () => {
    const a = await instance();
    const set = suite.zone.issueToken(
      { aud: 'https://api.example.com/ssf', txn: 't-1', sub_id: { format: 'opaque', id: 'sid-1' }, events: { 'https://schemas.openid.net/secevent/caep/event-type/session-revoked': { event_timestamp: 1 } } },
      { header: { typ: 'secevent+jwt' } },
    );
    expectOutcome(await a.get(set), '401 IT scope=orders:read', PRM, [set], a.logger.lines);
    // …even with the API's own audience: its typ alone refuses it.
    const aimed = suite.zone.issueToken({ events: {} }, { header: { typ: 'secevent+jwt' } });
    expectOutcome(await a.get(aimed), '401 IT scope=orders:read', PRM, [aimed], a.logger.lines);
  });

  it('X24 an entry lives Lmax + L (fake clock), then is swept; a token claiming a lifetime over Lmax is refused', async () => {
    const a = await instance();
    const sid1 = token({ sid: 'sid-1' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-1' });
    expectRevoked(await a.get(sid1), sid1, a);
    const lifetimeMs = (LMAX_SECONDS + 60) * 1000;
    a.clock.offsetMs = lifetimeMs - 1000;
    a.revocations.sweepNow();
    expect(a.revocations.status().entries).toBe(1);
    a.clock.offsetMs = lifetimeMs + 1000;
    a.revocations.sweepNow();
    expect(a.revocations.status().entries).toBe(0);
    a.clock.offsetMs = 0;
    const now = Math.floor(Date.now() / 1000);
    const long = token({ iat: now, exp: now + LMAX_SECONDS + 1 });
    expectOutcome(await a.get(long), '401 IT scope=orders:read', PRM, [long], a.logger.lines);
    expect(await a.get(token({ iat: now, exp: now + LMAX_SECONDS }))).toMatchObject({ status: 200 });
  });

  it('X23 (one instance) revoke by session, user, agent (keycard_app_id, else client_id) and token; restore lifts only its entry', async () => {
    const a = await instance();
    const sid1 = token({ sid: 'sid-1' });
    const sid2 = token({ sid: 'sid-2' });
    expect(await a.get(sid1)).toMatchObject({ status: 200 });
    expect(await a.get(sid1)).toMatchObject({ status: 200 }); // verified again, and cached, before the revocation
    expect(await post(a, '/admin/revoke', { issuer: suite.zone.issuer, sessionId: 'sid-1' })).toMatchObject({ status: 200 });
    expectRevoked(await a.get(sid1), sid1, a); // a verified-token cache hit is refused too
    expect(await a.get(sid2)).toMatchObject({ status: 200 });

    const app7 = token({ sub: 'user-9', client_id: 'rotated-7', keycard_app_id: 'app-7' });
    const cli7 = token({ sub: 'user-9', client_id: 'app-7' });
    const other = token({ sub: 'user-9', client_id: 'cli-8', keycard_app_id: 'app-8' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, agent: 'app-7' });
    expectRevoked(await a.get(app7), app7, a);
    expectRevoked(await a.get(cli7), cli7, a);
    expect(await a.get(other)).toMatchObject({ status: 200 });

    const user2 = token({ sub: 'user-2' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, subject: 'user-2' });
    expectRevoked(await a.get(user2), user2, a);
    const one = token({ sub: 'user-3' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, tokenId: JSON.parse(Buffer.from(one.split('.')[1], 'base64url').toString()).jti });
    expectRevoked(await a.get(one), one, a);
    expect(await a.get(token({ sub: 'user-3' }))).toMatchObject({ status: 200 });

    // Another issuer's session of the same id is not touched (identifiers are per issuer).
    await a.revocations.revoke({ issuer: 'https://other.example.com', sessionId: 'sid-2' });
    expect(await a.get(sid2)).toMatchObject({ status: 200 });

    expect(await post(a, '/admin/restore', { issuer: suite.zone.issuer, sessionId: 'sid-1' })).toMatchObject({ status: 200 });
    expect(await a.get(sid1)).toMatchObject({ status: 200 });
    expectRevoked(await a.get(user2), user2, a);
    // The audit records the revocation and the refusal it caused; neither names a token.
    expect(a.logger.lines.some((line) => line.includes('revocation_applied kind=session'))).toBe(true);
    expect(a.logger.lines.some((line) => line.includes('reason=revoked'))).toBe(true);
    for (const secret of [sid1, sid2, app7, cli7, user2, one]) expect(a.logger.lines.some((line) => line.includes(secret))).toBe(false);
  });

  it('X23 an invalid target is refused with a TypeError naming the field, and changes nothing', async () => {
    const a = await instance();
    await expect(a.revocations.revoke({ issuer: suite.zone.issuer })).rejects.toThrow(TypeError);
    await expect(a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 's', agent: 'a' })).rejects.toThrow(/exactly one/);
    await expect(a.revocations.revoke({ issuer: '', sessionId: 's' })).rejects.toThrow(/issuer/);
    expect(a.revocations.status().entries).toBe(0);
  });
});

describeRedis('§X revocation list across instances (real redis-server)', () => {
  const redis = redisForSuite();

  it('X23 a revocation taken on A is refused on A at once and on B within D; restore lifts it everywhere', async () => {
    const a = await instance({ redisUrl: redis.url });
    const b = await instance({ redisUrl: redis.url });
    const sid1 = token({ sid: 'sid-1' });
    const user1 = token({ sub: 'user-1', sid: 'sid-9' });
    const agent7 = token({ sub: 'user-5', client_id: 'app-7' });
    for (const t of [sid1, user1, agent7]) expect(await b.get(t)).toMatchObject({ status: 200 });
    expect(await post(a, '/admin/revoke', { issuer: suite.zone.issuer, sessionId: 'sid-1' })).toMatchObject({ status: 200 });
    expectRevoked(await a.get(sid1), sid1, a);
    await eventually(() => refused(b, sid1));
    expectRevoked(await b.get(sid1), sid1, b);
    await a.revocations.revoke({ issuer: suite.zone.issuer, subject: 'user-1' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, agent: 'app-7' });
    await eventually(async () => (await refused(b, user1)) && (await refused(b, agent7)));
    await a.revocations.restore({ issuer: suite.zone.issuer, sessionId: 'sid-1' });
    await eventually(async () => !(await refused(b, token({ sub: 'user-4', sid: 'sid-1' }))));
    expectRevoked(await b.get(user1), user1, b);
    expect(b.logger.lines.some((line) => line.includes('revocation_applied kind=session') && line.includes('origin=shared'))).toBe(true);
  });

  it('X24 the Redis key of an entry expires with it (TTL Lmax + L); no token is written to Redis', async () => {
    const a = await instance({ redisUrl: redis.url });
    const sid1 = token({ sid: 'sid-1' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-1' });
    const client = new Redis(redis.url);
    const key = `keycard:revocation:e:${targetKey({ kind: 'session', issuer: suite.zone.issuer, value: 'sid-1' })}`;
    const ttl = await client.pttl(key);
    expect(ttl).toBeGreaterThan((LMAX_SECONDS + 60) * 1000 - 5000);
    expect(ttl).toBeLessThanOrEqual((LMAX_SECONDS + 60) * 1000);
    await a.get(sid1);
    const keys = await client.keys('*');
    const values = await Promise.all(keys.map((k) => client.get(k)));
    expect(JSON.stringify(values)).not.toContain(sid1.split('.')[1]);
    client.disconnect();
  });

  it('X25 100 000 entries loaded: no Redis command per request, one in-process lookup per token and list version', async () => {
    const a = await instance({ redisUrl: redis.url });
    for (let i = 0; i < 100_000; i++) {
      a.revocations.list.add({ kind: i % 2 ? 'session' : 'subject', issuer: suite.zone.issuer, value: `gone-${i}`, expiresAtMs: Date.now() + 3_600_000, source: 'test' });
    }
    const t0 = token({ sid: 'sid-live' });
    expect(await a.get(t0)).toMatchObject({ status: 200 });
    expect(await a.get(t0)).toMatchObject({ status: 200 }); // verified again: now in the verified-token cache, with its verdict
    const monitor = new Redis(redis.url);
    const commands: string[] = [];
    const watching = await monitor.monitor();
    watching.on('monitor', (_time: string, args: string[]) => commands.push(args[0]!));
    let lookups = 0;
    const find = a.revocations.list.find.bind(a.revocations.list);
    a.revocations.list.find = (...args) => {
      lookups += 1;
      return find(...args);
    };
    for (let i = 0; i < 1000; i++) expect((await a.get(t0)).status).toBe(200);
    expect(lookups).toBe(0); // the verdict taken at this list version holds
    a.revocations.list.add({ kind: 'session', issuer: suite.zone.issuer, value: 'another', expiresAtMs: Date.now() + 3_600_000, source: 'test' });
    for (let i = 0; i < 10; i++) expect((await a.get(t0)).status).toBe(200);
    expect(lookups).toBe(1); // a new version: one lookup, then the verdict again
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(commands).toEqual([]);
    watching.disconnect();
    monitor.disconnect();
  }, 120_000);

  it('X26 C, started later, refuses what was revoked before, and what was revoked while it read its snapshot', async () => {
    const a = await instance({ redisUrl: redis.url });
    await a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-1' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, agent: 'app-7' });
    for (let i = 0; i < 2000; i++) await a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: `old-${i}` });
    const starting = instance({ redisUrl: redis.url });
    const during = a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-during' });
    const c = await starting;
    await during;
    const sid1 = token({ sid: 'sid-1' });
    expectRevoked(await c.get(sid1), sid1, c);
    const app7 = token({ client_id: 'app-7' });
    expectRevoked(await c.get(app7), app7, c);
    await eventually(() => refused(c, token({ sid: 'sid-during' })));
    expect(await c.get(token({ sid: 'sid-2' }))).toMatchObject({ status: 200 });
  }, 120_000);

  it('X27 Redis down: C boots degraded (freshness routes 503, others served); A refuses at once; B refuses within D once Redis is back', async () => {
    const a = await instance({ redisUrl: redis.url });
    const b = await instance({ redisUrl: redis.url });
    const kept = token({ sid: 'sid-kept' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-kept' });
    await eventually(() => refused(b, kept));
    await redis.server.stop();
    // (a) C boots while Redis is down.
    const c = await instance({ redisUrl: redis.url });
    const t0 = token({ sid: 'sid-2' });
    expect(await c.get(t0)).toMatchObject({ status: 200 });
    expectOutcome(await c.get(t0, '/fresh'), '503 RA', PRM, [t0], c.logger.lines);
    expect(c.revocations.status()).toMatchObject({ status: 'degraded', reasons: ['store_unavailable'] });
    expect(c.logger.lines.filter((line) => line.includes('Keycard revocation degraded'))).toHaveLength(1);
    await eventually(() => b.revocations.degraded);
    expectOutcome(await b.get(t0, '/fresh'), '503 RA', PRM, [t0], b.logger.lines);
    // Entries already in memory keep working throughout.
    expectRevoked(await b.get(kept), kept, b);
    // (b) A revokes while Redis is down: A refuses at once.
    const sid1 = token({ sid: 'sid-1' });
    await a.revocations.revoke({ issuer: suite.zone.issuer, sessionId: 'sid-1' });
    expectRevoked(await a.get(sid1), sid1, a);
    expect(await b.get(sid1)).toMatchObject({ status: 200 });
    redis.server = await startRedis({ port: redis.server.port });
    await eventually(() => refused(b, sid1), 15_000);
    await eventually(() => refused(c, sid1), 15_000);
    await eventually(() => !c.revocations.degraded, 15_000);
    // This redis-server kept nothing across its restart (no persistence): B still holds what it knew.
    expectRevoked(await b.get(kept), kept, b);
    expect(await c.get(t0, '/fresh')).toMatchObject({ status: 200 });
  }, 60_000);
});
