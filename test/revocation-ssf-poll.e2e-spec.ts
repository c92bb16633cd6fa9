/**
 * Catalogue X21, X22: RFC 8936 poll delivery. A transmitter's poll endpoint on loopback (a queue
 * of SETs signed by the TestZone, kept until acknowledged or reported in `setErrs`) is polled by
 * instances A and B sharing a real redis-server; one polls at a time (a lease in Redis).
 */
import { describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import { freePort } from './support/free-port.js';
import { expectOutcome } from './support/denials.js';
import { PRM } from './support/forge.js';
import { redisUnavailableReason } from './support/redis-server.js';
import { eventually, redisForSuite, revocationSuite, type RevocationInstance } from './support/revocation-app.js';

const SSF_AUD = 'https://api.example.com/ssf';
const POLL_AUTHORIZATION = 'Bearer poll-secret-0123456789';
const describeRedis = redisUnavailableReason() === undefined ? describe : describe.skip;

interface PollBody {
  ack?: string[];
  setErrs?: Record<string, { err: string; description: string }>;
  maxEvents?: number;
  returnImmediately?: boolean;
}

/** An RFC 8936 poll endpoint: SETs by jti, delivered until acknowledged or refused; every poll body recorded. */
async function startPollEndpoint(port?: number): Promise<{ url: string; port: number; queue: Map<string, string>; polls: PollBody[]; close(): Promise<void> }> {
  const queue = new Map<string, string>();
  const polls: PollBody[] = [];
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      if (req.headers.authorization !== POLL_AUTHORIZATION) return void res.writeHead(401).end();
      const body = JSON.parse(text) as PollBody;
      polls.push(body);
      for (const jti of [...(body.ack ?? []), ...Object.keys(body.setErrs ?? {})]) queue.delete(jti);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ sets: Object.fromEntries(queue), moreAvailable: false }));
    });
  });
  const listenOn = port ?? (await freePort());
  await new Promise<void>((resolve) => server.listen(listenOn, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${listenOn}/poll`, port: listenOn, queue, polls, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const suite = revocationSuite();

function poller(url: string, redisUrl?: string): Promise<RevocationInstance> {
  return suite.instance({ redisUrl, revocation: { ssf: { audience: SSF_AUD, poll: { url, authorization: POLL_AUTHORIZATION, intervalMs: 100 } } } });
}

const jtiOf = (set: string) => (JSON.parse(Buffer.from(set.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
const token = (claims: Record<string, unknown>) => suite.zone.issueToken({ scope: 'orders:read', ...claims });

describeRedis('§X SSF poll delivery (RFC 8936), two instances, real redis-server', () => {
  const redis = redisForSuite();

  it('X21 S0 acknowledged, a bad-aud SET reported in setErrs, each exactly once though A and B both poll; B refuses sid-1 within D', async () => {
    const endpoint = await startPollEndpoint();
    try {
      const tx = suite.zone.ssfTransmitter({ audience: SSF_AUD });
      const s0 = tx.sessionRevoked('sid-1', 'user-1');
      const bad = tx.set('https://schemas.openid.net/secevent/caep/event-type/session-revoked', { event_timestamp: 1 }, { format: 'opaque', id: 'sid-9' }, { aud: 'https://other.example/ssf' });
      endpoint.queue.set(jtiOf(s0), s0);
      endpoint.queue.set(jtiOf(bad), bad);
      const a = await poller(endpoint.url, redis.url);
      const b = await poller(endpoint.url, redis.url);
      const sid1 = token({ sid: 'sid-1', sub: 'user-1' });
      await eventually(async () => (await b.get(sid1)).status === 401);
      expectOutcome(await a.get(sid1), '401 IT scope=orders:read', PRM, [sid1], a.logger.lines);
      await eventually(() => endpoint.queue.size === 0);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const acks = endpoint.polls.flatMap((p) => p.ack ?? []);
      const errs = endpoint.polls.flatMap((p) => Object.entries(p.setErrs ?? {}));
      expect(acks).toEqual([jtiOf(s0)]);
      expect(errs).toEqual([[jtiOf(bad), { err: 'invalid_audience', description: expect.any(String) }]]);
      expect(endpoint.polls.every((p) => p.returnImmediately === true && typeof p.maxEvents === 'number')).toBe(true);
      expect(await (async () => (await b.get(token({ sid: 'sid-9' }))).status)()).toBe(200);
    } finally {
      await endpoint.close();
    }
  });
});

describe('§X SSF poll delivery, endpoint down', () => {
  it('X22 connection refused: capped back-off; degraded after 30 s (freshness routes 503, others served); the first successful poll restores both', async () => {
    const port = await freePort();
    const at = await poller(`http://127.0.0.1:${port}/poll`);
    const t0 = token({ sid: 'sid-2' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(at.revocations.status().status).toBe('up'); // within the staleness bound
    at.clock.offsetMs = 31_000;
    await eventually(() => at.revocations.degraded, 10_000);
    expect(at.revocations.status().reasons).toEqual(['ssf_poll_stale']);
    expectOutcome(await at.get(t0, '/fresh'), '503 RA', PRM, [t0], at.logger.lines);
    expect((await at.get(t0)).status).toBe(200);
    const endpoint = await startPollEndpoint(port);
    try {
      await eventually(() => !at.revocations.degraded, 15_000);
      expect((await at.get(t0, '/fresh')).status).toBe(200);
      expect(at.logger.lines.filter((line) => line.includes('Keycard revocation degraded: ssf_poll_stale'))).toHaveLength(1);
    } finally {
      await endpoint.close();
    }
  }, 60_000);
});
