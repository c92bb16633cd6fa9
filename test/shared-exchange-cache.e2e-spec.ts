/**
 * Exchanged tokens shared by several instances through a real `redis-server` (catalogue §S3): the
 * zone sees one exchange, Redis holds no raw token (hashed keys, AES-256-GCM values), entries expire
 * with the token, keys rotate by id.
 */
import { afterAll, afterEach, beforeAll, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ClientCredentialsService, ImpersonationService, TokenExchangeError } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { RedisExchangedTokenStore, type TokenCipherKey } from '../lib/redis/index.js';
import { startExchangeContext } from './support/exchange-context.js';
import { R } from './support/forge.js';
import { redisUnavailableReason, startRedis, type RunningRedis } from './support/redis-server.js';
import { describeUnless } from './support/skip.js';

const SECRET = 's3cret-value-1234';
const K1: TokenCipherKey = { id: 'k1', key: randomBytes(32) };
const K2: TokenCipherKey = { id: 'k2', key: randomBytes(32).toString('base64') };
const skipReason = redisUnavailableReason();

describeUnless(skipReason, 'shared exchanged-token cache in Redis', () => {
  let zone: TestZone;
  let redis: RunningRedis;
  let admin: Redis;
  const clients: Redis[] = [];
  let contexts: Awaited<ReturnType<typeof startExchangeContext>>[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({
      audience: 'https://agent.example.com',
      resources: { [R]: ['orders:read'] },
      clients: [{ clientId: 'agent-a', clientSecret: SECRET }, { clientId: 'agent-b', clientSecret: SECRET }],
    });
    redis = await startRedis();
    admin = new Redis(redis.port, '127.0.0.1');
  });
  afterEach(async () => {
    await Promise.all(contexts.map((c) => c.close()));
    contexts = [];
    await admin.flushall();
    zone.reset();
  });
  afterAll(async () => {
    await Promise.all([admin, ...clients].map((client) => (client.status === 'ready' ? client.quit() : client.disconnect())));
    await redis?.close();
    await zone?.stop();
  });

  /** One service instance with its own Redis connection and key ring. */
  async function instance(keys: TokenCipherKey[] = [K1], clientId = 'agent-a') {
    const client = new Redis(redis.port, '127.0.0.1');
    clients.push(client);
    // Connected first: the service waits 250 ms for the store, then exchanges without it (by
    // design); a connection still being set up on a busy CI machine used that budget (S3 saw 2).
    if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve));
    const started = await startExchangeContext({
      zoneUrl: zone.issuer,
      clientCredentials: { clientId, clientSecret: SECRET },
      exchangeStore: new RedisExchangedTokenStore({ redis: client, keys }),
    });
    contexts.push(started);
    return started;
  }
  const userToken = (claims: Record<string, unknown> = {}) => zone.issueToken({ sub: 'alice', client_id: 'user-app', scope: 'openid', ...claims });
  const request = (subjectToken: string) => ({ subjectToken, resource: R, scope: 'orders:read' });

  /** Every key and value in Redis, read with SCAN (not KEYS) and typed reads. */
  async function everything(): Promise<{ key: string; value: string; ttlMs: number }[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await admin.scan(cursor, 'COUNT', 100);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    return Promise.all(
      keys.map(async (key) => {
        expect(await admin.type(key)).toBe('string');
        return { key, value: (await admin.get(key))!, ttlMs: await admin.pttl(key) };
      }),
    );
  }

  /** No token, no part of a JWT (header, payload, signature), no secret, no plain token hash. */
  function expectNothingRaw(entries: { key: string; value: string }[], tokens: string[]) {
    const forbidden = [SECRET, ...tokens.flatMap((t) => [t, ...t.split('.').filter((part) => part.length > 8)])];
    forbidden.push(...tokens.map((t) => createHash('sha256').update(t).digest('base64url')));
    for (const { key, value } of entries) {
      for (const text of [key, value]) for (const secret of forbidden) expect(text.includes(secret)).toBe(false);
      // Sealed shape (key id . 12-byte IV . ciphertext . 16-byte tag), and the ciphertext is no
      // readable JSON. (A bare /eyJ/ check failed now and then: random base64url can contain it.)
      const [, iv, ciphertext, tag, extra] = value.split('.');
      expect({ iv: iv?.length, tag: tag?.length, extra }).toEqual({ iv: 16, tag: 22, extra: undefined });
      expect(value).not.toContain('"');
      expect(() => JSON.parse(Buffer.from(ciphertext, 'base64url').toString('utf8'))).toThrow();
    }
  }

  it('S3 instance A exchanges, instance B asks for the same → the zone sees 1 exchange; no raw token in Redis; the entry expires with the token', async () => {
    const [a, b] = [await instance(), await instance()];
    const subject = userToken({ exp: Math.floor(Date.now() / 1000) + 120 });
    const first = await a.service.exchange(request(subject));
    const second = await b.service.exchange(request(subject));
    expect(zone.counts.token).toBe(1);
    expect(second).toEqual(first);
    expect(second.accessToken).toBe(first.accessToken);

    const entries = await everything();
    expect(entries).toHaveLength(1);
    expect(entries[0].key).toMatch(/^keycard:exchange:[A-Za-z0-9_-]{43}$/);
    expect(entries[0].value).toMatch(/^k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expectNothingRaw(entries, [subject, first.accessToken]);
    // Never past the subject token's exp (120 s) nor the exchanged token's life minus the 30 s margin.
    expect(entries[0].ttlMs).toBeGreaterThan(60_000);
    expect(entries[0].ttlMs).toBeLessThanOrEqual(120_000);
    for (const c of contexts) expect(c.logger.lines.join('\n')).not.toContain(subject);

    // Another subject token is another entry, and another exchange.
    await b.service.exchange(request(userToken({ sub: 'bob' })));
    expect(zone.counts.token).toBe(2);
    expect(await everything()).toHaveLength(2);
  });

  it('S3 two different services (agent-a, agent-b) on one Redis with the same key ring never serve each other\'s tokens: the zone sees one exchange per service', async () => {
    const a = await instance([K1], 'agent-a');
    const b = await instance([K1], 'agent-b');
    const subject = userToken();
    const fromA = await a.service.exchange(request(subject));
    const fromB = await b.service.exchange(request(subject));
    expect(zone.tokenRequests).toHaveLength(2);
    expect(fromB.accessToken).not.toBe(fromA.accessToken);
    const agentOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).client_id;
    expect([agentOf(fromA.accessToken), agentOf(fromB.accessToken)]).toEqual(['agent-a', 'agent-b']);
    expectNothingRaw(await everything(), [subject, fromA.accessToken, fromB.accessToken]);
  });

  it('S3 keys rotate by id: a ring led by a new key reads entries sealed with the old one; an unknown key id or an altered entry counts as missing', async () => {
    const old = await instance([K1]);
    const subject = userToken();
    const token = await old.service.exchange(request(subject));
    const rotated = await instance([K2, K1]);
    expect(await rotated.service.exchange(request(subject))).toEqual(token);
    expect(zone.counts.token).toBe(1);

    // Sealed with the new key from now on.
    const other = userToken({ sub: 'carol' });
    await rotated.service.exchange(request(other));
    const values = (await everything()).map((e) => e.value.split('.')[0]).sort();
    expect(values).toEqual(['k1', 'k2']);

    // An instance without k1 cannot read the old entry: it exchanges itself, no error.
    const stranger = await instance([K2]);
    expect((await stranger.service.exchange(request(subject))).accessToken).toEqual(expect.any(String));
    expect(zone.counts.token).toBe(3);

    // An altered entry does not open: one more exchange, and the instance still answers.
    for (const { key, value } of await everything()) {
      const [id, iv, body, tag] = value.split('.');
      await admin.set(key, [id, iv, body.slice(0, -2) + (body.endsWith('AA') ? 'BB' : 'AA'), tag].join('.'), 'PX', 60_000);
    }
    const fresh = await instance([K2, K1]);
    await fresh.service.exchange(request(other));
    expect(zone.counts.token).toBe(4);
    expectNothingRaw(await everything(), [subject, other, token.accessToken]);
  });

  it('S3 client credentials and impersonation share through Redis too: instance B gets A\'s token, the zone sees 1 request per grant, nothing raw in Redis', async () => {
    zone.impersonation = 'allowed';
    const [a, b] = [await instance(), await instance()];
    const grants = [
      (c: typeof a) => c.context.get(ClientCredentialsService).token({ resource: R, scope: 'orders:read' }),
      (c: typeof a) => c.context.get(ImpersonationService).impersonate({ user: 'alice', resource: R, scope: 'orders:read' }),
    ];
    const tokens: string[] = [];
    for (const [index, grant] of grants.entries()) {
      const first = await grant(a);
      const second = await grant(b);
      expect(second).toEqual(first);
      expect(zone.counts.token).toBe(index + 1);
      tokens.push(first.accessToken);
    }
    expect(new Set(tokens).size).toBe(2);
    const entries = await everything();
    expect(entries).toHaveLength(2);
    for (const entry of entries) expect(entry.key).toMatch(/^keycard:exchange:[A-Za-z0-9_-]{43}$/);
    expectNothingRaw(entries, tokens);
    for (const c of contexts) expect(c.logger.lines.some((l) => tokens.some((t) => l.includes(t)))).toBe(false);
  });

  it('S3 with several zones, a subject token from an untrusted issuer fails before the shared store is asked (no Redis command) and before any zone request', async () => {
    const other = await TestZone.start({ audience: 'https://agent.example.com' });
    try {
      const client = new Redis(redis.port, '127.0.0.1');
      clients.push(client);
      const started = await startExchangeContext({
        zones: [zone.issuer, other.issuer],
        clientCredentials: { clientId: 'agent-a', clientSecret: SECRET },
        exchangeStore: new RedisExchangedTokenStore({ redis: client, keys: [K1] }),
      });
      contexts.push(started);
      await client.ping();
      const gets = async () => Number(/cmdstat_get:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
      const before = await gets();
      const foreign = userToken({ iss: 'https://stranger.example.com' });
      const error = await started.service.exchange(request(foreign)).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(TokenExchangeError);
      expect((error as TokenExchangeError).kind).toBe('untrusted_issuer');
      expect(await gets()).toBe(before);
      expect(zone.counts.token).toBe(0);
      expect(other.counts.token).toBe(0);
      // A trusted issuer's token goes through the store as before: one GET more, one entry.
      await started.service.exchange(request(userToken()));
      expect(await gets()).toBe(before + 1);
      expect(await everything()).toHaveLength(1);
    } finally {
      await other.stop();
    }
  });

  it('S3 Redis stops → exchanges go on through the zone, the outage is logged once, never a failure from the cache', async () => {
    const redisGone = await startRedis();
    // A store on a server that is then stopped: the instance must not depend on it.
    const lone = new Redis(redisGone.port, '127.0.0.1', { maxRetriesPerRequest: 1, disconnectTimeout: 10 });
    lone.on('error', () => undefined);
    clients.push(lone);
    const b = await startExchangeContext({
      zoneUrl: zone.issuer,
      clientCredentials: { clientId: 'agent-a', clientSecret: SECRET },
      exchangeStore: new RedisExchangedTokenStore({ redis: lone, keys: [K1] }),
    });
    contexts.push(b);
    await redisGone.close();
    const subject = userToken();
    const started = performance.now();
    const token = await b.service.exchange(request(subject));
    expect(token.accessToken).toEqual(expect.any(String));
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(await b.service.exchange(request(subject))).toBe(token); // the in-process cache stays in front
    expect(zone.counts.token).toBe(1);
    const warnings = b.logger.lines.filter((l) => l.startsWith('Shared exchange cache unavailable'));
    expect(warnings).toHaveLength(1);
    expect(b.logger.lines.join('\n')).not.toContain(subject);
  });
});
