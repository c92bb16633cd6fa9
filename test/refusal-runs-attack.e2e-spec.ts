/**
 * O5 attack trial (trial 18c) on refusal-run log folding: what a hostile client tries to keep a
 * refusal out of the log. A message can be refused after its connection closed: the decision waits
 * on something (an app's asynchronous token validator, such as a revocation lookup; the throttler's
 * Redis storage), and the client sends its burst and closes meanwhile. Such refusals are logged,
 * one line each (a closed connection has no close left to write a summary at), never counted into
 * a run whose summary nothing would write (before: 1 line for 20 refusals, the other 19 nowhere in
 * the log, not even at shutdown).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type OnGatewayDisconnect, WebSocketGateway } from '@nestjs/websockets';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { Int, Query, Resolver } from '@nestjs/graphql';
import { DecisionEvents, KEYCARD_TOKEN_VALIDATORS, RequireScopes, type AgentContext, type TokenValidator } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { acknowledgedGraphQLWs, startGraphQLApp } from './support/graphql-app.js';
import { startWritesGateway, WriteSubscriptions } from './support/write-handlers.js';

/**
 * An app validator that answers when the test lets it (as a revocation lookup in a shared store
 * answers some time later): the messages are all under judgement when their connection closes.
 */
class GatedValidator implements TokenValidator {
  calls = 0;
  private open!: () => void;
  private gate = new Promise<void>((resolve) => (this.open = resolve));
  /** Judges a message (`call`) when released; a connection opening (no call) at once. */
  validate(_agent: AgentContext, call: unknown): Promise<void> | void {
    if (call === undefined) return;
    this.calls++;
    return this.gate;
  }
  release(): void {
    this.open();
  }
}

/** A second gateway on the same server: it counts the connections the server saw close. */
@WebSocketGateway()
class Closed implements OnGatewayDisconnect {
  count = 0;
  handleDisconnect(): void {
    this.count++;
  }
}

/** Waits (polling, 5 s at most) until `done()` holds; never a timed assertion. */
async function until(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** A connection of `door` with `token`: sends refused `write` messages, and drops its transport. */
async function connect(door: 'ws' | 'socket.io', port: number, token: string): Promise<{ burst(n: number): void; drop(): void }> {
  if (door === 'ws') {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    return { burst: (n) => { for (let i = 0; i < n; i++) socket.send(JSON.stringify({ event: 'write', data: {} })); }, drop: () => socket.terminate() };
  }
  const socket = io(`http://127.0.0.1:${port}`, { auth: { token }, reconnection: false, forceNew: true });
  await new Promise((resolve, reject) => socket.once('connect', () => resolve(undefined)).once('connect_error', reject));
  return { burst: (n) => { for (let i = 0; i < n; i++) socket.emit('write', {}); }, drop: () => socket.disconnect() };
}

describe.each(['ws', 'socket.io'] as const)('O5 refusal runs attack trial over %s', (door) => {
  let zone: TestZone;
  let api: Awaited<ReturnType<typeof startWritesGateway>>;
  const validator = new GatedValidator();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startWritesGateway(zone, door, { auditLog: true, providers: [Closed, { provide: KEYCARD_TOKEN_VALIDATORS, useValue: [validator] }] });
  });
  afterAll(async () => {
    await api?.app.close();
    await zone?.stop();
  });

  it(`O5 ${door}: messages refused insufficient_scope after their connection closed (an asynchronous validator decides them) are each logged, never counted into a summary nothing writes; each audited; no token in the log`, async () => {
    const jti = `jti-after-close-${door}`;
    const token = zone.issueToken({ client_id: 'agent-close', scope: 'orders:read', jti });
    const client = await connect(door, api.port, token);
    client.burst(20);
    await until(() => validator.calls === 20);
    expect(validator.calls).toBe(20); // all 20 are being judged
    client.drop();
    await until(() => api.app.get(Closed).count > 0);
    expect(api.app.get(Closed).count).toBe(1); // the server saw it close before any of them was decided
    validator.release();
    const audited = () => api.logger.lines.filter((line) => line.includes('"keycard.audit"') && line.includes(`"tokenId":"${jti}"`) && line.includes('"status":403'));
    await until(() => audited().length === 20);
    expect(audited()).toHaveLength(20);
    const denied = api.logger.lines.filter((line) => line.startsWith('denied ws write ') && line.includes(`jti=${jti}`));
    // Every refusal shows: one line each, or a first line and a summary adding up to 20.
    const shown = denied.reduce((sum, line) => sum + 1 + Number(/ repeated=(\d+)$/.exec(line)?.[1] ?? 0) - (/ repeated=/.test(line) ? 1 : 0), 0);
    expect(shown).toBe(20);
    for (const line of denied) expect(line).toContain('status=403 reason=insufficient_scope agent=agent-close user=user-1');
    for (const line of api.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);
});

describe.each(['ws', 'graphql-ws', 'mercurius'] as const)('O5 refusal runs at shutdown over %s', (door) => {
  it(`O5 ${door}: a client that stops reading (its socket never completes the close handshake) does not keep its run's summary out of the log: once app.close() resolves, 1 line and 1 line with "repeated=9" are written; no token in the log`, async () => {
    const zone = await TestZone.start({ audience: R });
    const jti = `jti-shutdown-${door}`;
    const token = zone.issueToken({ client_id: 'agent-shutdown', scope: 'orders:read', jti });
    const api = door === 'ws'
      ? await startWritesGateway(zone, 'ws')
      : await (door === 'graphql-ws'
        ? startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, { providers: [WriteSubscriptions], graphqlWs: [] })
        : startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R }, { providers: [WriteSubscriptions], mercuriusSubscription: [] }));
    let socket: WebSocket | undefined;
    try {
      const denied = () => api.logger.lines.filter((line) => line.startsWith('denied ') && line.includes(`jti=${jti}`));
      let answers = 0;
      if (door === 'ws') {
        socket = new WebSocket(`ws://127.0.0.1:${(api as { port: number }).port}/`, { headers: { authorization: `Bearer ${token}` } });
        await new Promise((resolve, reject) => socket!.once('open', resolve).once('error', reject));
        socket.on('message', () => answers++);
        for (let i = 0; i < 10; i++) socket.send(JSON.stringify({ event: 'write', data: {} }));
      } else {
        socket = await acknowledgedGraphQLWs((api as { wsUrl: string }).wsUrl, token);
        const answered = new Set<string>();
        socket.on('message', (raw) => {
          const frame = JSON.parse(String(raw)) as { id?: string; type: string };
          if ((frame.type === 'next' || frame.type === 'error') && !answered.has(frame.id!)) answers = answered.add(frame.id!).size;
        });
        for (let i = 0; i < 10; i++) socket.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: 'subscription { orderWrites }' } }));
      }
      await until(() => answers === 10);
      expect(answers).toBe(10);
      expect(denied()).toHaveLength(1);
      socket.pause(); // reads nothing more: the server's close frame stays unanswered
      await api.app.close();
      expect(denied()).toHaveLength(2);
      expect(denied()[1]).toMatch(/status=403 reason=insufficient_scope agent=agent-shutdown user=user-1 jti=\S+ repeated=9$/);
      for (const line of api.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
    } finally {
      socket?.terminate();
      await api.app.close().catch(() => undefined);
      await zone.stop();
    }
  }, 60_000);
});

/** A schema with more protected fields (40) than a connection keeps refusal runs of. */
@Resolver()
class ManyFields {}
const FIELDS = Array.from({ length: 40 }, (_, i) => `f${i}`);
for (const name of FIELDS) {
  Object.defineProperty(ManyFields.prototype, name, { value: () => 1, writable: true, configurable: true });
  const descriptor = Object.getOwnPropertyDescriptor(ManyFields.prototype, name)!;
  Query(() => Int, { name, nullable: true })(ManyFields.prototype, name, descriptor);
  RequireScopes('orders:write')(ManyFields.prototype, name, descriptor);
}

describe('O5 refusal runs beyond the runs a connection keeps (graphql-ws)', () => {
  it('O5 graphql-ws: a query refusing all 40 protected fields, then one of 2 000 aliases of the 40th, on one connection: each field refused FORBIDDEN insufficient_scope, yet the log holds at most 33 lines until the close, then 1 "other calls" line with repeated=2007 (before: a line per refusal beyond the 32 runs); each refusal published; no token in the log', async () => {
    const zone = await TestZone.start({ audience: R });
    const gql = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R }, { providers: [ManyFields], graphqlWs: [] });
    const jti = 'jti-many-fields';
    const token = zone.issueToken({ client_id: 'agent-many', scope: 'orders:read', jti });
    let socket: WebSocket | undefined;
    try {
      const events = { refused: 0 };
      gql.app.get(DecisionEvents).subscribe((event) => void (event.type === 'refused' && events.refused++));
      socket = await acknowledgedGraphQLWs(gql.wsUrl, token);
      const answers: { id: string; payload: { errors?: { extensions?: { code?: string; error?: string } }[] } }[] = [];
      socket.on('message', (raw) => {
        const frame = JSON.parse(String(raw)) as (typeof answers)[number] & { type: string };
        if (frame.type === 'next') answers.push(frame);
      });
      socket.send(JSON.stringify({ id: 'all', type: 'subscribe', payload: { query: `{ ${FIELDS.join(' ')} }` } }));
      const aliases = Array.from({ length: 2_000 }, (_, i) => `a${i}: f39`).join(' ');
      socket.send(JSON.stringify({ id: 'aliases', type: 'subscribe', payload: { query: `{ ${aliases} }` } }));
      await until(() => answers.length === 2);
      expect(answers.map((a) => [a.id, a.payload.errors?.length])).toEqual([['all', 40], ['aliases', 2_000]]);
      const codes = new Set(answers.flatMap((a) => a.payload.errors!.map((e) => `${e.extensions?.code} ${e.extensions?.error}`)));
      expect([...codes]).toEqual(['FORBIDDEN insufficient_scope']);
      expect(events.refused).toBe(2_040);
      const denied = () => gql.logger.lines.filter((line) => line.startsWith('denied ') && line.includes(`jti=${jti}`));
      expect(denied().length).toBeLessThanOrEqual(33);
      socket.close();
      await until(() => denied().some((line) => line.includes('repeated=')));
      expect(denied().filter((line) => line.includes('repeated='))).toEqual([
        `denied other calls (beyond 32 runs) status=403 reason=insufficient_scope agent=agent-many user=user-1 jti=${jti} repeated=2007`,
      ]);
      for (const line of gql.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
    } finally {
      socket?.terminate();
      await gql.app.close();
      await zone.stop();
    }
  }, 60_000);
});
