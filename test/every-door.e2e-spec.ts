/**
 * One decision for every door (catalogue O23; Q16): one requirement, `orders:read`, served on HTTP,
 * GraphQL over HTTP, graphql-ws, a socket.io message, a `ws` message, a gRPC unary call and an MCP
 * `tools/call`, each called with no token, a forged token, an expired token, a valid token without
 * the scope and one with it. Every door's decision event has the same `type` and `reason`, every
 * refusal the same `scope`, every audit record the same `reason` code.
 *
 * Connection doors (graphql-ws, socket.io, `ws`) verify the token once, at the handshake: there no
 * token, a forged token and an expired token are refused before any message, and that refusal is
 * audited as the connection's (`recordConnection`, method `WS` / `GRAPHQL-WS`), not published as a
 * decision event. What is decided per message there: a valid token lacking the scope, one holding
 * it, and a connection whose token expired since the handshake.
 *
 * Real apps over loopback, real clients (fetch, graphql-ws, socket.io-client, ws, @grpc/grpc-js),
 * a real TestZone; decisions observed with `app.get(DecisionEvents).subscribe(…)`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Get, type INestApplication } from '@nestjs/common';
import { GrpcMethod, Payload, Transport } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { McpController, McpHttpControllerFor, McpStrategy, StreamableHttpTransport, Tool } from '@rekog/mcp-nest';
import { createClient, type Client as GraphQLWsClient } from 'graphql-ws';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { Agent, DecisionEvents, KeycardConnections, RequireScopes, type DecisionEvent } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { baseClaims, R } from './support/forge.js';
import { freePort } from './support/free-port.js';
import { parseChallenge, send, type HttpAnswer } from './support/http.js';
import { postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { startApp, type CapturingLogger } from './support/keycard-app.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
const SCOPE = 'orders:read';

@Controller()
class OrdersHttpController {
  @Get('orders')
  @RequireScopes(SCOPE)
  list(@Agent('clientId') clientId: string) {
    return { by: clientId };
  }
}

@Controller()
class OrdersRpcController {
  @RequireScopes(SCOPE)
  @GrpcMethod('Orders', 'Find')
  find(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
    return { id: request.id, by: clientId };
  }
}

@WebSocketGateway()
class OrdersGateway {
  @RequireScopes(SCOPE)
  @SubscribeMessage('orders')
  orders(@Agent('clientId') clientId: string) {
    return { event: 'orders', data: clientId };
  }
}

const mcpTransport = new StreamableHttpTransport({ statefulMode: false });
const mcpStrategy = new McpStrategy({ name: 'orders-mcp', version: '1.0.0', transports: [mcpTransport], logging: false });

@McpController()
class OrdersTools {
  @Tool({ name: 'orders', description: 'The caller\'s orders' })
  @RequireScopes(SCOPE)
  orders(@Agent('clientId') clientId: string) {
    return { by: clientId };
  }
}

/** The MCP endpoint behind the guard; it requires nothing itself: the tool's `orders:read` is the requirement. */
@Controller('mcp')
class OrdersMcpHttp extends McpHttpControllerFor(mcpTransport) {}

/** What a client of a door was told, in the door's own shape, reduced to what every door can say. */
interface Answer {
  served: boolean;
  /** The OAuth error code (absent for no credentials and when served). */
  error?: string;
  /** The scope the refusal names. */
  scope?: string;
  /** The close code, when the door answered by closing the connection. */
  closed?: number;
  /** The raw answer, scanned for leaks. */
  raw: unknown;
}

/** What an HTTP answer with an RFC 6750 challenge says. */
function httpAnswer(res: HttpAnswer): Answer {
  const challenge = parseChallenge(res.headers['www-authenticate']);
  return { served: res.status === 200, error: challenge?.params.error, scope: challenge?.params.scope, raw: { text: res.text, challenge: res.headers['www-authenticate'] } };
}

/** What a GraphQL result (over HTTP or graphql-ws) says of the `whoami` field. */
function graphqlAnswer(body: { data?: Record<string, unknown> | null; errors?: { extensions?: Record<string, unknown> }[] }): Answer {
  const extensions = body.errors?.[0]?.extensions ?? {};
  return { served: typeof body.data?.whoami === 'string', error: extensions.error as string | undefined, scope: extensions.scope as string | undefined, raw: body };
}

/** What a gateway's answer says: the handler's event, or an `exception` event `{ status, error?, error_description, scope? }`. */
function gatewayAnswer(message: { event: string; data: unknown }): Answer {
  if (message.event !== 'exception') return { served: message.event === 'orders', raw: message };
  const data = message.data as { error?: string; scope?: string };
  return { served: false, error: data.error, scope: data.scope, raw: message };
}

type Unary = (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, reply?: unknown) => void) => void;

/** One unary `Orders.Find` with `token` in the `authorization` metadata. */
async function findOverGrpc(url: string, token: string | undefined): Promise<Answer> {
  const definition = protoLoader.loadSync(PROTO);
  const Orders = (grpc.loadPackageDefinition(definition).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
  const client = new Orders(url, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Find: Unary };
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.add('authorization', `Bearer ${token}`);
  try {
    const { error, reply } = await new Promise<{ error: grpc.ServiceError | null; reply?: unknown }>((resolve) =>
      client.Find({ id: 'o-1' }, metadata, (e, r) => resolve({ error: e, reply: r })),
    );
    if (error === null) return { served: true, raw: reply };
    // The status (16 UNAUTHENTICATED, 7 PERMISSION_DENIED), and the RFC 6750 challenge as trailing metadata.
    const trailers = error.metadata.getMap();
    expect([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]).toContain(error.code);
    expectFixedDescription(error.details);
    const challenge = parseChallenge(trailers['www-authenticate'] as string | undefined);
    return { served: false, error: challenge?.params.error, scope: challenge?.params.scope, raw: { code: error.code, details: error.details, trailers } };
  } finally {
    client.close();
  }
}

/** One JSON-RPC `tools/call` of the `orders` tool, POSTed as the MCP SDK client would. */
async function callToolOverMcp(url: string, token: string | undefined): Promise<Answer> {
  const headers: [string, string][] = [
    ['Content-Type', 'application/json'],
    ['Accept', 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', '2025-06-18'],
  ];
  if (token !== undefined) headers.push(['Authorization', `Bearer ${token}`]);
  const res = await send(url, 'POST', '/mcp', headers, JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'orders', arguments: {} } }));
  const answer = httpAnswer(res);
  // A tool that ran answers 200 with its result; a refusal inside the tool pipeline would be 200 with `isError`.
  return { ...answer, served: answer.served && !res.text.includes('"isError":true') };
}

/** A connection through one door: refused at its handshake, or open for messages. */
interface Connection {
  /** The handshake's refusal (HTTP status or close code, and the OAuth error when it names one), when refused. */
  refused?: { code: number; error?: string };
  ask(): Promise<Answer>;
  close(): Promise<void>;
}

function connectWs(port: number, token: string | undefined): Promise<Connection> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const close = async () => void socket.terminate();
  const ask = () =>
    new Promise<Answer>((resolve) => {
      socket.once('message', (raw) => resolve(gatewayAnswer(JSON.parse(String(raw)) as { event: string; data: unknown })));
      socket.send(JSON.stringify({ event: 'orders', data: {} }));
    });
  return new Promise((resolve, reject) => {
    socket.once('unexpected-response', (_req, res) =>
      resolve({ refused: { code: res.statusCode ?? 0, error: parseChallenge(res.headers['www-authenticate'])?.params.error }, ask, close }),
    );
    socket.once('open', () => resolve({ ask, close }));
    socket.on('error', (error) => {
      if (!String(error.message).includes('Unexpected server response')) reject(error);
    });
  });
}

function connectSocketIo(port: number, token: string | undefined): Promise<Connection> {
  const socket = io(`http://127.0.0.1:${port}`, { auth: token === undefined ? {} : { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  const close = async () => void socket.disconnect();
  const ask = () =>
    new Promise<Answer>((resolve) => {
      socket.onAny(function first(event: string, data: unknown) {
        socket.offAny(first);
        resolve(gatewayAnswer({ event, data }));
      });
      socket.emit('orders', {});
    });
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ ask, close }));
    socket.once('connect_error', (error: Error & { data?: { error?: string } }) => resolve({ refused: { code: 401, error: error.data?.error }, ask, close }));
  });
}

function connectGraphQLWs(url: string, token: string | undefined): Promise<Connection> {
  return new Promise((resolve) => {
    let client: GraphQLWsClient | undefined = undefined;
    const close = async () => client?.dispose();
    const ask = () =>
      new Promise<Answer>((answer, reject) => {
        client!.subscribe<Record<string, unknown>>({ query: '{ whoami }' }, {
          next: (value) => answer(graphqlAnswer(value as Parameters<typeof graphqlAnswer>[0])),
          // An operation on a connection whose token expired: graphql-ws closes the socket (4401 invalid_token).
          error: (error: unknown) => {
            const { code, reason } = error as { code?: number; reason?: string };
            if (code === undefined) reject(error instanceof Error ? error : new Error(`graphql-ws: ${JSON.stringify(error)}`));
            else answer({ served: false, error: String(reason), closed: code, raw: { code, reason } });
          },
          complete: () => undefined,
        });
      });
    client = createClient({
      url,
      webSocketImpl: WebSocket,
      connectionParams: token === undefined ? {} : { authorization: `Bearer ${token}` },
      lazy: false,
      retryAttempts: 0,
      onNonLazyError: () => undefined, // the refusal is read from the close event
      on: {
        connected: () => resolve({ ask, close }),
        closed: (event) => {
          const { code, reason } = event as { code: number; reason: string };
          resolve({ refused: { code, error: reason === 'unauthorized' ? undefined : String(reason) }, ask, close });
        },
      },
    });
  });
}

/** The five calls of O23 and what every door answers. */
type Case = 'no token' | 'forged' | 'expired' | 'without the scope' | 'with the scope';
const CASES: Case[] = ['no token', 'forged', 'expired', 'without the scope', 'with the scope'];

/** What one call through one door produced: its decision events, its audit records and the client's answer. */
interface Observation {
  /** Each distinct decision: `type reason`, the agent (`clientId` when verified), required and missing scopes. */
  events: string[];
  /** The distinct `reason` codes of the call's audit records (connection records aside). */
  audit: (string | undefined)[];
  answer: Omit<Answer, 'raw'>;
}

/** One decision event, in a line: what it says of the decision, the agent and the scopes. */
const decision = (what: string, agent?: string, missing?: string, required = SCOPE) => `${what} by=${agent ?? '-'} required=${required} missing=${missing ?? '-'}`;

/**
 * Per case, on every door: the decision event (its `type` and `reason`; an agent only once its token
 * was verified; `requiredScopes` always `orders:read`, `missingScopes` when lacking it), the audit
 * record's reason code, and what the client is told.
 */
const EXPECTED: Record<Case, Observation> = {
  'no token': { events: [decision('refused no_credentials')], audit: ['no_credentials'], answer: { served: false, error: undefined, scope: SCOPE } },
  forged: { events: [decision('refused invalid_token')], audit: ['signature_invalid'], answer: { served: false, error: 'invalid_token', scope: SCOPE } },
  expired: { events: [decision('refused token_expired')], audit: ['expired'], answer: { served: false, error: 'invalid_token', scope: SCOPE } },
  'without the scope': {
    events: [decision('refused insufficient_scope', 'agent-o23', SCOPE)], audit: ['insufficient_scope'], answer: { served: false, error: 'insufficient_scope', scope: SCOPE },
  },
  'with the scope': { events: [decision('admitted', 'agent-o23')], audit: [undefined], answer: { served: true } },
};

/** One running app, its decisions and its log. */
interface Observed {
  app: INestApplication;
  logger: CapturingLogger;
  clock: { offsetMs: number };
  events: DecisionEvent[];
}

function observe(running: { app: INestApplication; logger: CapturingLogger; clock: { offsetMs: number } }): Observed {
  const observed: Observed = { ...running, events: [] };
  running.app.get(DecisionEvents).subscribe((event) => observed.events.push(event));
  return observed;
}

/** The audit records written since line `from` that are no connection's, parsed. */
function callAuditSince(observed: Observed, from: number): Record<string, unknown>[] {
  return observed.logger.lines
    .slice(from)
    .filter((l) => l.startsWith('{"event":"keycard.audit"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((record) => !String(record.route).startsWith('connection'));
}

/**
 * An event never holds the token: not in its fields (the `context`, `source` and `agent` references
 * aside), not in the verified agent's claims, and not where an app's text logger would print the
 * event (`util.inspect` at its default depth, as `console.log(event)` does).
 */
function expectNoTokenIn(event: DecisionEvent, secrets: readonly string[]): void {
  const { context: _context, source: _source, agent, ...fields } = event;
  const printed = [JSON.stringify(fields), JSON.stringify(agent?.claims ?? {}), inspect(event)];
  for (const secret of secrets) expect(printed.filter((text) => text.includes(secret))).toEqual([]);
}

/** Audit lines over HTTP are written when the response is finished: give the `finish` listeners a turn. */
const settled = () => new Promise((resolve) => setTimeout(resolve, 30));

async function observeCall(observed: Observed, call: () => Promise<Answer>, secrets: string[]): Promise<Observation & { decided: DecisionEvent[] }> {
  observed.events.length = 0;
  const from = observed.logger.lines.length;
  const { raw, ...answer } = await call();
  await settled();
  expectNoLeak(raw, secrets, observed.logger.lines);
  const decided = [...observed.events];
  for (const event of decided) expectNoTokenIn(event, secrets);
  const describe = (e: DecisionEvent) =>
    decision(e.reason === undefined ? e.type : `${e.type} ${e.reason}`, e.performedBy?.clientId, e.missingScopes?.join(' '), e.requiredScopes?.join(' ') ?? '-');
  const audit = callAuditSince(observed, from).map((r) => r.reason as string | undefined);
  return { events: [...new Set(decided.map(describe))], audit: [...new Set(audit)], answer, decided };
}

describe('O23 one requirement, every door: the same reason, scope and audit code', () => {
  let zone: TestZone;
  let doors: Observed;
  let graphql: Observed & { url: string; wsUrl: string };
  let ws: Observed & { port: number };
  let socketIo: Observed & { port: number };
  let grpcUrl: string;
  let httpUrl: string;
  const open: Connection[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    const options = { zoneUrl: zone.issuer, resource: R, auditLog: true };
    grpcUrl = `127.0.0.1:${await freePort()}`;
    const main = await startApp('express', options, {
      controllers: [OrdersHttpController, OrdersRpcController, OrdersTools, OrdersMcpHttp],
      configure: (app) => {
        mcpStrategy.setHttpAdapter(app.getHttpAdapter());
        app.connectMicroservice({ strategy: mcpStrategy });
        app.connectMicroservice({ transport: Transport.GRPC, options: { package: 'orders', protoPath: PROTO, url: grpcUrl } }, { inheritAppConfig: true });
      },
    });
    await main.app.startAllMicroservices();
    httpUrl = main.url;
    doors = observe(main);
    const gql = await startGraphQLApp('apollo', options);
    graphql = { ...observe(gql), url: gql.url, wsUrl: gql.wsUrl };
    const gateway = async (platform: 'ws' | 'socket.io') => {
      const api = await startApp('express', options, {
        controllers: [],
        providers: [OrdersGateway],
        configure: (app) => app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app))),
      });
      return { ...observe(api), port: Number(new URL(api.url).port) };
    };
    ws = await gateway('ws');
    socketIo = await gateway('socket.io');
  });
  afterAll(async () => {
    for (const connection of open.splice(0)) await connection.close();
    for (const observed of [doors, graphql, ws, socketIo]) await observed?.app.close();
    await zone?.stop();
  });

  const now = () => Math.floor(Date.now() / 1000);
  const tokenFor: Record<Case, () => string | undefined> = {
    'no token': () => undefined,
    forged: () => forged(zone.issueToken(baseClaims(zone, { client_id: 'agent-o23' }))),
    expired: () => zone.issueToken(baseClaims(zone, { client_id: 'agent-o23', iat: now() - 900, exp: now() - 600 })),
    'without the scope': () => zone.issueToken(baseClaims(zone, { client_id: 'agent-o23', scope: 'profile' })),
    'with the scope': () => zone.issueToken(baseClaims(zone, { client_id: 'agent-o23' })),
  };

  /** The doors where each call carries its own token. */
  const perCall: [string, () => Observed, (token: string | undefined) => Promise<Answer>][] = [
    ['HTTP', () => doors, async (token) => httpAnswer(await send(httpUrl, 'GET', '/orders', token === undefined ? [] : [['Authorization', `Bearer ${token}`]]))],
    ['GraphQL over HTTP', () => graphql, async (token) => graphqlAnswer((await postGraphQL(graphql.url, '{ whoami }', token)).body)],
    ['gRPC unary', () => doors, (token) => findOverGrpc(grpcUrl, token)],
    ['MCP tools/call', () => doors, (token) => callToolOverMcp(httpUrl, token)],
  ];

  it.each(perCall)('O23 %s: every case decided as on every other door (reason, scope, audit code)', async (_door, app, call) => {
    const seen: Record<string, Observation> = {};
    for (const name of CASES) {
      const token = tokenFor[name]();
      const { decided, ...observation } = await observeCall(app(), () => call(token), token === undefined ? [] : [token]);
      seen[name] = observation;
      // A refusal is one decision; an admitted MCP tool call is two (the endpoint's, then the tool's).
      if (name !== 'with the scope') expect({ name, count: decided.length }).toEqual({ name, count: 1 });
    }
    expect(seen).toEqual(EXPECTED);
  });

  /** The connection doors: each case opens its own connection, and asks once when it opened. */
  const connectionDoors: [string, () => Observed, (token: string | undefined) => Promise<Connection>][] = [
    ['graphql-ws', () => graphql, (token) => connectGraphQLWs(graphql.wsUrl, token)],
    ['socket.io message', () => socketIo, (token) => connectSocketIo(socketIo.port, token)],
    ['ws message', () => ws, (token) => connectWs(ws.port, token)],
  ];

  it.each(connectionDoors)('O23 %s: no token, forged, expired are refused at the handshake (audited as the connection\'s, no message decided)', async (door, app, connect) => {
    const from = app().logger.lines.length;
    const refusals: Record<string, unknown> = {};
    for (const name of ['no token', 'forged', 'expired'] as const) {
      const connection = await connect(tokenFor[name]());
      open.push(connection);
      refusals[name] = connection.refused;
    }
    const closeCode = door === 'graphql-ws' ? 4401 : 401;
    expect(refusals).toEqual({
      'no token': { code: closeCode, error: undefined },
      forged: { code: closeCode, error: 'invalid_token' },
      expired: { code: closeCode, error: 'invalid_token' },
    });
    const connectionRecords = app()
      .logger.lines.slice(from)
      .filter((l) => l.startsWith('{"event":"keycard.audit"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .map(({ route, status, reason }) => ({ route, status, reason }));
    const route = door === 'graphql-ws' ? 'connection' : `connection ${door.split(' ')[0]}`;
    expect(connectionRecords).toEqual(['no_credentials', 'signature_invalid', 'expired'].map((reason) => ({ route, status: 401, reason })));
  });

  it.each(connectionDoors)('O23 %s: per message, without the scope → insufficient_scope; with it → admitted; after the token expired → token_expired', async (door, app, connect) => {
    const seen: Record<string, Observation> = {};
    for (const name of ['without the scope', 'with the scope'] as const) {
      const token = tokenFor[name]()!;
      const connection = await connect(token);
      open.push(connection);
      expect(connection.refused).toBeUndefined();
      const { decided, ...observation } = await observeCall(app(), () => connection.ask(), [token]);
      expect({ name, count: decided.length }).toEqual({ name, count: 1 });
      seen[name] = observation;
    }
    // A connection opened with a valid token (exp in 2 min), asked after exp + the module's tolerance.
    const exp = now() + 120;
    const token = zone.issueToken(baseClaims(zone, { client_id: 'agent-o23', exp }));
    const connection = await connect(token);
    open.push(connection);
    expect(connection.refused).toBeUndefined();
    app().clock.offsetMs = (exp + 120) * 1000 - Date.now();
    try {
      const { decided, ...observation } = await observeCall(app(), () => connection.ask(), [token]);
      expect(decided).toHaveLength(1);
      seen.expired = observation;
    } finally {
      app().clock.offsetMs = 0;
    }
    const { 'without the scope': unscoped, 'with the scope': scoped } = EXPECTED;
    // The expired connection's agent was verified at its handshake: its refusal names it.
    const expired = { ...EXPECTED.expired, events: [decision('refused token_expired', 'agent-o23')] };
    // graphql-ws answers an operation on an expired connection by closing it: 4401, reason `invalid_token`, no room for a scope.
    if (door === 'graphql-ws') expired.answer = { served: false, error: 'invalid_token', closed: 4401 };
    expect(seen).toEqual({ 'without the scope': unscoped, 'with the scope': scoped, expired });
  });
});

/**
 * Subscribers observe, never decide (catalogue W12, traced once §W is): what an app's subscriber
 * throws is logged by its name only and skipped; the answer, the audit log and later subscribers
 * are as without it.
 */
describe('decision event subscribers', () => {
  let zone: TestZone;
  let api: Awaited<ReturnType<typeof startApp>>;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R, auditLog: true });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('subscribers that throw change no answer: one error line each per event, naming no token; the audit log and later subscribers get every event', async () => {
    const events = api.app.get(DecisionEvents);
    const valid = zone.issueToken(baseClaims(zone, { client_id: 'agent-w12' }));
    const fake = forged(valid);
    const ask = async () => {
      const answers: HttpAnswer[] = [];
      for (const token of [valid, fake, undefined]) answers.push(await send(api.url, 'GET', '/orders', token === undefined ? [] : [['Authorization', `Bearer ${token}`]]));
      return answers.map(({ status, headers, json }) => ({ status, challenge: headers['www-authenticate'], json }));
    };
    const without = await ask();
    const later: DecisionEvent[] = [];
    const unsubscribe = [
      events.subscribe(() => {
        throw new Error(`this subscriber saw ${valid}`);
      }),
      events.subscribe(() => {
        throw `a string with ${valid}`; // what careless app code throws
      }),
      events.subscribe((event) => later.push(event)),
    ];
    const from = api.logger.lines.length;
    let answers: Awaited<ReturnType<typeof ask>>;
    try {
      answers = await ask();
      await settled();
    } finally {
      for (const stop of unsubscribe) stop();
    }
    expect(answers).toEqual(without);
    expect(answers.map((a) => a.status)).toEqual([200, 401, 401]);
    const lines = api.logger.lines.slice(from);
    expect(lines.filter((l) => l.includes('subscriber failed'))).toEqual(
      [1, 2, 3].flatMap(() => ['A decision event subscriber failed: Error', 'A decision event subscriber failed: string']),
    );
    expect(later.map((e) => `${e.type} ${e.reason ?? ''}`.trim())).toEqual(['admitted', 'refused invalid_token', 'refused no_credentials']);
    const audit = lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.map(({ status, reason, agent }) => ({ status, reason, agent }))).toEqual([
      { status: 200, reason: undefined, agent: 'agent-w12' },
      { status: 401, reason: 'signature_invalid', agent: undefined },
      { status: 401, reason: 'no_credentials', agent: undefined },
    ]);
    expect(lines.filter((l) => l.includes(valid) || l.includes(fake.split('.')[2]))).toEqual([]);
    for (const event of later) expectNoTokenIn(event, [valid, fake]);
  });
});
