/**
 * O5, the log's share of a refused burst: on a long-lived connection, a run of the same refusal (same
 * handler, same reason) writes its first line as any refusal does, and then one summary line with
 * how many more there were, when the connection closes (or once per interval while the run goes on,
 * see `lib/contexts/connection-refusal-runs.spec.ts`). Every refusal still reaches the client in its
 * door's shape, and every one is still published as a decision event; the audit log (`auditLog: true`),
 * a record of every decision, still writes one record per refused message.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication, type OnModuleInit } from '@nestjs/common';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { DecisionEvents, type DecisionEvent } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { acknowledgedGraphQLWs, startGraphQLApp } from './support/graphql-app.js';
import type { CapturingLogger } from './support/keycard-app.js';
import { startWritesGateway, WriteSubscriptions } from './support/write-handlers.js';

/** Every refused decision event, as a subscriber (the audit log among them) sees them. */
@Injectable()
class Refused implements OnModuleInit {
  readonly events: DecisionEvent[] = [];
  constructor(private readonly decisions: DecisionEvents) {}
  onModuleInit(): void {
    this.decisions.subscribe((event) => {
      if (event.type === 'refused') this.events.push(event);
    });
  }
}

type Door = 'ws' | 'socket.io' | 'graphql-ws' | 'mercurius';

interface Api {
  app: INestApplication;
  logger: CapturingLogger;
  /** Where a client connects (a port, or a graphql-ws URL). */
  target: string;
}

async function gatewayApp(zone: TestZone, door: 'ws' | 'socket.io'): Promise<Api> {
  const { app, logger, port } = await startWritesGateway(zone, door, { providers: [Refused], auditLog: true });
  return { app, logger, target: String(port) };
}

async function graphqlApp(zone: TestZone, door: 'graphql-ws' | 'mercurius'): Promise<Api> {
  const providers = [WriteSubscriptions, Refused];
  const gql = await (door === 'graphql-ws'
    ? startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { providers, graphqlWs: [] })
    : startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { providers, mercuriusSubscription: [] }));
  return { app: gql.app, logger: gql.logger, target: gql.wsUrl };
}

/** A connection of one door: sends one message of `name` and resolves with the refusal (or answer) it gets. */
interface Client {
  send(name: string): Promise<unknown>;
  close(): void;
}

async function wsClient(port: string, token: string): Promise<Client> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  return {
    send: (event) =>
      new Promise((resolve) => {
        socket.once('message', (raw) => resolve(JSON.parse(String(raw))));
        socket.send(JSON.stringify({ event, data: {} }));
      }),
    close: () => socket.close(),
  };
}

/** socket.io with its default transports (long-polling first, then the upgrade): refusals come through the acknowledgement (and an `exception` event). */
async function socketIoClient(port: string, token: string): Promise<Client> {
  const socket: Socket = io(`http://127.0.0.1:${port}`, { auth: { token }, reconnection: false, forceNew: true });
  await new Promise((resolve, reject) => socket.once('connect', () => resolve(undefined)).once('connect_error', reject));
  return {
    // A served message answers with an event (`served`), a refused one through the acknowledgement.
    send: (event) =>
      new Promise((resolve) => {
        const done = (data: unknown) => {
          socket.off('served', done);
          resolve(data);
        };
        socket.once('served', done);
        socket.emit(event, {}, done);
      }),
    close: () => socket.disconnect(),
  };
}

async function graphqlWsClient(url: string, token: string): Promise<Client> {
  const socket = await acknowledgedGraphQLWs(url, token);
  let next = 0;
  return {
    send: (field) =>
      new Promise((resolve) => {
        const id = String(next++);
        const listener = (raw: WebSocket.RawData) => {
          const frame = JSON.parse(String(raw)) as { id?: string; type: string; payload?: unknown };
          if (frame.id !== id || frame.type === 'complete') return;
          socket.off('message', listener);
          resolve(frame);
        };
        socket.on('message', listener);
        socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query: `subscription { ${field} }` } }));
      }),
    close: () => socket.close(),
  };
}

/** The OAuth `error` and `scope` a refusal carries, whatever its door's shape. */
function refusalOf(answer: unknown): { error?: string; scope?: string } {
  const frame = answer as { data?: { error?: string; scope?: string }; error?: string; scope?: string; payload?: unknown };
  if (frame.payload !== undefined) {
    const errors = (Array.isArray(frame.payload) ? frame.payload : (frame.payload as { errors?: unknown[] }).errors) as { extensions?: { error?: string; scope?: string } }[];
    return { error: errors?.[0]?.extensions?.error, scope: errors?.[0]?.extensions?.scope };
  }
  const fields = frame.data ?? frame;
  return { error: fields.error, scope: fields.scope };
}

/** Waits (polling, 5 s at most) until `done()` holds; never a timed assertion: it only gives the server time to see the close. */
async function until(done: () => boolean): Promise<void> {
  for (let waited = 0; !done() && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
}

const REFUSED_NAME: Record<Door, string> = { ws: 'write', 'socket.io': 'write', 'graphql-ws': 'orderWrites', mercurius: 'orderWrites' };
/** The call as log lines name it. */
const CALL: Record<Door, string> = {
  ws: 'ws write',
  'socket.io': 'ws write',
  'graphql-ws': 'graphql subscription anonymous.orderWrites',
  mercurius: 'graphql subscription anonymous.orderWrites',
};

describe.each(['ws', 'socket.io', 'graphql-ws', 'mercurius'] as const)('O5 refusal log runs over %s', (door) => {
  let zone: TestZone;
  let api: Api;
  let client: Client | undefined;
  const connect = (token: string) => (door === 'ws' ? wsClient : door === 'socket.io' ? socketIoClient : graphqlWsClient)(api.target, token);
  const deniedLines = (jti: string) => api.logger.lines.filter((line) => line.includes(`denied ${CALL[door]} `) && line.includes(`jti=${jti}`));

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await (door === 'ws' || door === 'socket.io' ? gatewayApp(zone, door) : graphqlApp(zone, door));
  });
  afterEach(() => client?.close());
  afterAll(async () => {
    await api?.app.close();
    await zone?.stop();
  });

  it(`O5 ${door}: 40 messages refused insufficient_scope on one connection write 1 line, then 1 line with "repeated=39" when it closes; each refusal still answered, published and audited`, async () => {
    const jti = `jti-run-${door}`;
    const token = zone.issueToken({ client_id: 'agent-runs', scope: 'orders:read', jti });
    const recorder = api.app.get(Refused);
    const before = recorder.events.length;
    client = await connect(token);
    for (let i = 0; i < 40; i++) expect(refusalOf(await client.send(REFUSED_NAME[door]))).toEqual({ error: 'insufficient_scope', scope: 'orders:write' });
    expect(deniedLines(jti)).toHaveLength(1);
    expect(recorder.events.length - before).toBe(40);
    const audited = api.logger.lines.filter((line) => line.includes('"keycard.audit"') && line.includes(`"tokenId":"${jti}"`) && line.includes('"status":403'));
    expect(audited).toHaveLength(40);
    client.close();
    client = undefined;
    await until(() => deniedLines(jti).length === 2);
    const [first, summary] = deniedLines(jti);
    expect(first).toContain('status=403 reason=insufficient_scope');
    expect(first).not.toContain('repeated=');
    expect(summary).toContain('status=403 reason=insufficient_scope');
    expect(summary).toContain('repeated=39');
    for (const line of api.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);

  if (door === 'ws' || door === 'socket.io') {
    it(`O5 ${door}: runs of two handlers interleaved fold apart (a client alternating cannot defeat the folding); a message served in between ends the runs (their summaries written), and the next refusal is logged again`, async () => {
      const jti = `jti-alternating-${door}`;
      const token = zone.issueToken({ client_id: 'agent-runs', scope: 'orders:read', jti });
      client = await connect(token);
      for (let i = 0; i < 10; i++) {
        await client.send('write');
        await client.send('admin');
      }
      const mine = () => api.logger.lines.filter((line) => line.startsWith('denied ') && line.includes(`jti=${jti}`));
      expect(mine()).toHaveLength(2);
      await client.send('read');
      expect(mine().filter((line) => line.includes('repeated=9'))).toHaveLength(2);
      await client.send('write');
      expect(mine()).toHaveLength(5);
      client.close();
      client = undefined;
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(mine()).toHaveLength(5); // the last run had no repeat: nothing to summarise
    }, 60_000);
  }
});

describe('O5 refusal log runs of socket.io handshakes', () => {
  let zone: TestZone;
  let api: Awaited<ReturnType<typeof startWritesGateway>>;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startWritesGateway(zone, 'socket.io', { auditLog: true });
  });
  afterAll(async () => {
    await api?.app.close();
    await zone?.stop();
  });

  it('O5 socket.io: 50 CONNECT packets with a forged token on one engine.io connection are each refused (connect_error invalid_token) and audited, but write 1 line, then 1 line with "repeated=49" when it closes', async () => {
    const token = zone.issueToken({ client_id: 'agent-handshakes', scope: 'orders:read' });
    const forged = `${token.slice(0, -4)}AAAA`;
    const socket = new WebSocket(`ws://127.0.0.1:${api.port}/socket.io/?EIO=4&transport=websocket`);
    const refusals: string[] = [];
    const answered = new Promise<void>((resolve) =>
      socket.on('message', (raw) => {
        if (String(raw).startsWith('44') && refusals.push(String(raw)) === 50) resolve();
      }),
    );
    await new Promise((resolve) => socket.once('message', resolve)); // engine.io's open packet
    for (let i = 0; i < 50; i++) socket.send(`40{"token":"${forged}"}`);
    await answered;
    expect(new Set(refusals.map((frame) => (JSON.parse(frame.slice(2)) as { data: { error: string } }).data.error))).toEqual(new Set(['invalid_token']));
    const denied = () => api.logger.lines.filter((line) => line.startsWith('denied socket.io connection'));
    expect(denied()).toEqual(['denied socket.io connection status=401 reason=signature_invalid']);
    expect(api.logger.lines.filter((line) => line.includes('"keycard.audit"') && line.includes('"status":401'))).toHaveLength(50);
    socket.close();
    await until(() => denied().length === 2);
    expect(denied()[1]).toBe('denied socket.io connection status=401 reason=signature_invalid repeated=49');
    for (const line of api.logger.lines) expect(line.includes(forged.split('.')[2]!)).toBe(false);
  }, 60_000);
});
