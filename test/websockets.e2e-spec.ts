/**
 * WebSocket gateways behind the Keycard guard (catalogue §N6, N8, N10): `@nestjs/platform-ws` with
 * the `ws` client and `@nestjs/platform-socket.io` with `socket.io-client`, over loopback. The
 * adapters are wrapped by `KeycardConnections.guard()`, so the handshake is verified before any
 * gateway code runs; every message is judged again (scopes, expiry).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Module, type INestApplication, type WebSocketAdapter } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { type OnGatewayConnection, type OnGatewayDisconnect, SubscribeMessage, WebSocketGateway, WebSocketServer } from '@nestjs/websockets';
import { setTimeout as delay } from 'node:timers/promises';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import {
  Agent, KEYCARD_CLOCK, KeycardConnections, KeycardGuard, KeycardModule, Public, RequireScopes, type AgentContext, type Clock,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { PRM, R } from './support/forge.js';
import { parseChallenge } from './support/http.js';
import { CapturingLogger } from './support/keycard-app.js';
import { itUnless } from './support/skip.js';
import { auditRecordsV1, auditV1 } from './support/audit-records.js';

@WebSocketGateway()
class OrdersGateway implements OnGatewayConnection, OnGatewayDisconnect {
  static connections = 0;
  static disconnections = 0;
  static instance: OrdersGateway;

  /** A `ws` server or a socket.io server, by platform. */
  @WebSocketServer() server!: { clients?: Set<WebSocket>; emit(event: string, data: unknown): unknown };

  constructor() {
    OrdersGateway.instance = this;
  }

  handleConnection() {
    OrdersGateway.connections++;
  }

  handleDisconnect() {
    OrdersGateway.disconnections++;
  }

  /** Pushes `news` to every connected client, as an app's broadcast would: the server alone decides. */
  static broadcast(data: string) {
    const server = OrdersGateway.instance.server;
    // The plainest `ws` broadcast: every client the server still holds, without a readyState check.
    // (A `ws` server has an `emit` too, its EventEmitter's: `clients` tells them apart.)
    if (server.clients instanceof Set) for (const client of server.clients) client.send(JSON.stringify({ event: 'news', data }));
    else server.emit('news', data);
  }

  @SubscribeMessage('whoami')
  whoami(@Agent() agent: AgentContext) {
    return { event: 'whoami', data: `${agent.clientId}/${agent.subject}` };
  }

  @RequireScopes('orders:write')
  @SubscribeMessage('place')
  place(@Agent('clientId') clientId: string) {
    return { event: 'placed', data: clientId };
  }

  @Public()
  @SubscribeMessage('ping')
  ping() {
    return { event: 'pong', data: 'pong' };
  }
}

type Platform = 'ws' | 'socket.io';

interface WsApp {
  app: INestApplication;
  port: number;
  logger: CapturingLogger;
  clock: { offsetMs: number };
}

/**
 * `allowAnonymous` (default false) as for `KeycardConnections.guard()`; `guarded` (default true): the adapter is
 * wrapped by it; `resource` (default `R`): `null` configures none (development mode, catalogue Q15).
 */
interface WsAppOptions {
  allowAnonymous?: boolean;
  guarded?: boolean;
  resource?: string | null;
}

async function startWsApp(zone: TestZone, platform: Platform, options: WsAppOptions = {}): Promise<WsApp> {
  const { allowAnonymous = false, guarded = true, resource = R } = options;
  const logger = new CapturingLogger();
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, ...(resource === null ? {} : { resource }), clockToleranceSeconds: 0, logger, auditLog: true })],
    providers: [OrdersGateway],
  })
  class WsAppModule {}
  const app = await NestFactory.create(WsAppModule, { logger: false, abortOnError: false });
  const adapter: WebSocketAdapter = platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app);
  app.useWebSocketAdapter(guarded ? app.get(KeycardConnections).guard(adapter, { allowAnonymous }) : adapter);
  const clock = { offsetMs: 0 };
  app.get<Clock>(KEYCARD_CLOCK).now = () => Date.now() + clock.offsetMs;
  await app.listen(0, '127.0.0.1');
  return { app, port: (app.getHttpServer().address() as { port: number }).port, logger, clock };
}

/** What one connection attempt produced, whichever the client library. */
interface Conversation {
  /** Set when the handshake was refused. */
  refused?: { status?: number; challenge?: ReturnType<typeof parseChallenge>; message?: string; data?: unknown };
  /** Sends an event and resolves with the first event received after it. */
  ask(event: string): Promise<{ event: string; data: unknown }>;
  /** socket.io only: sends an event with an acknowledgement callback (`emitWithAck`) and resolves with what it was called with. */
  askWithAck?(event: string): Promise<unknown>;
  /** Everything received, in order, ending with `close` (ws: `{ code, reason }`) or `disconnect` (socket.io: its reason). */
  received: { event: string; data: unknown }[];
  /** Resolves when the connection ended, whichever side ended it. */
  ended: Promise<void>;
  close(): void;
}

/** Waits until `done()` holds, at most `ms`. @throws when it still does not hold then, naming `what`. */
async function until(what: string, done: () => boolean, ms = 3000): Promise<void> {
  for (const deadline = Date.now() + ms; !done(); await delay(10)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** `promise`'s outcome, or `'pending'` after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([promise, delay(ms, 'pending' as const, { ref: false })]);
}

/** `second`: a second credential beside `token` (another `Authorization` header; for socket.io, the header beside `auth.token`). */
function connectWs(port: number, token?: string, second?: string): Promise<Conversation> {
  return new Promise((resolve, reject) => {
    const authorization = [token, second].filter((t) => t !== undefined).map((t) => `Bearer ${t}`);
    // Node's http sends an array as one header line per value (ws types the value as a string only).
    const headers = (authorization.length > 0 ? { authorization } : {}) as unknown as Record<string, string>;
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers });
    const received: { event: string; data: unknown }[] = [];
    socket.on('message', (raw) => received.push(JSON.parse(String(raw)) as { event: string; data: unknown }));
    const ended = new Promise<void>((done) =>
      socket.on('close', (code, reason) => {
        received.push({ event: 'close', data: { code, reason: reason.toString() } });
        done();
      }),
    );
    const ask = (event: string) =>
      new Promise<{ event: string; data: unknown }>((answer) => {
        socket.once('message', (raw) => answer(JSON.parse(String(raw)) as { event: string; data: unknown }));
        socket.send(JSON.stringify({ event, data: {} }));
      });
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () =>
        resolve({
          refused: { status: res.statusCode, challenge: parseChallenge(res.headers['www-authenticate']), message: body },
          ask,
          received,
          ended,
          close: () => socket.terminate(),
        }),
      );
    });
    socket.on('open', () => resolve({ ask, received, ended, close: () => socket.close() }));
    socket.on('error', (error) => {
      if (!String(error.message).includes('Unexpected server response')) reject(error);
    });
  });
}

function connectIo(port: number, token?: string, second?: string): Promise<Conversation> {
  return new Promise((resolve) => {
    const socket: Socket = io(`http://127.0.0.1:${port}`, {
      auth: token ? { token } : {},
      extraHeaders: second ? { authorization: `Bearer ${second}` } : {},
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    const received: { event: string; data: unknown }[] = [];
    socket.onAny((event: string, data: unknown) => received.push({ event, data }));
    const ended = new Promise<void>((done) =>
      socket.on('disconnect', (reason) => {
        received.push({ event: 'disconnect', data: reason });
        done();
      }),
    );
    const ask = (event: string) =>
      new Promise<{ event: string; data: unknown }>((answer) => {
        socket.onAny(function listener(name: string, data: unknown) {
          socket.offAny(listener);
          answer({ event: name, data });
        });
        socket.emit(event, {});
      });
    const askWithAck = (event: string) => socket.timeout(3000).emitWithAck(event, {});
    socket.on('connect', () => resolve({ ask, askWithAck, received, ended, close: () => socket.disconnect() }));
    socket.on('connect_error', (error: Error & { data?: unknown }) =>
      resolve({ refused: { message: error.message, data: error.data }, ask, received, ended, close: () => socket.disconnect() }),
    );
  });
}

describe.each<[Platform]>([['ws'], ['socket.io']])('WebSocket gateway over %s', (platform) => {
  let zone: TestZone;
  let api: WsApp;
  const open: Conversation[] = [];
  const connect = async (token?: string, second?: string) => {
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port, token, second);
    open.push(conversation);
    return conversation;
  };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startWsApp(zone, platform);
  });
  afterAll(async () => {
    for (const conversation of open) conversation.close();
    await api?.app.close();
    await zone?.stop();
  });

  /** The handshake refusal: HTTP 401 + challenge for ws, `connect_error` with the OAuth error for socket.io. */
  function expectRefusedHandshake(conversation: Conversation, error: string | undefined, secrets: string[]) {
    expect(conversation.refused).toBeDefined();
    if (platform === 'ws') {
      expect(conversation.refused!.status).toBe(401);
      expect(conversation.refused!.challenge?.params.resource_metadata).toBe(PRM);
      expect(conversation.refused!.challenge?.params.error).toBe(error);
    } else {
      expect(conversation.refused!.message).toBe(error ?? 'unauthorized');
      const data = conversation.refused!.data as { error?: string; error_description: string };
      expect(data.error).toBe(error);
      expectFixedDescription(data.error_description);
    }
    expectNoLeak(conversation.refused, secrets, api.logger.lines);
  }

  it('N6 no token in the handshake → rejected before any handler runs', async () => {
    const before = OrdersGateway.connections;
    expectRefusedHandshake(await connect(), undefined, []);
    expect(OrdersGateway.connections).toBe(before);
  });

  it('N6 forged token in the handshake → rejected (invalid_token) before any handler runs, nothing leaked', async () => {
    const before = OrdersGateway.connections;
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    expectRefusedHandshake(await connect(token), 'invalid_token', [token]);
    expect(OrdersGateway.connections).toBe(before);
  });

  it('N6 valid token → accepted; @Agent() in the message handler', async () => {
    const before = OrdersGateway.connections;
    const conversation = await connect(zone.issueToken({ client_id: 'agent-ws', sub: 'bob', scope: 'orders:read' }));
    expect(conversation.refused).toBeUndefined();
    expect(await conversation.ask('whoami')).toEqual({ event: 'whoami', data: 'agent-ws/bob' });
    expect(OrdersGateway.connections).toBe(before + 1);
  });

  it('N6 @RequireScopes on @SubscribeMessage without the scope → exception event with insufficient_scope and the scope', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    const conversation = await connect(token);
    const answer = await conversation.ask('place');
    expect(answer.event).toBe('exception');
    expect(answer.data).toMatchObject({ status: 'error', error: 'insufficient_scope', scope: 'orders:write' });
    expectFixedDescription((answer.data as { error_description: string }).error_description);
    expectNoLeak(answer, [token], api.logger.lines);
    // The connection stays usable for what the token allows.
    expect((await conversation.ask('whoami')).event).toBe('whoami');
  });

  itUnless(platform === 'socket.io' ? undefined : 'socket.io only: a `ws` message has no acknowledgement')('N6 socket.io: a refused message sent with an acknowledgement (emitWithAck) gets the refusal through it too, in the exception event\'s shape', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    const conversation = await connect(token);
    const acknowledged = await conversation.askWithAck!('place');
    expect(acknowledged).toEqual({ status: 'error', error: 'insufficient_scope', error_description: expect.any(String), scope: 'orders:write' });
    expectFixedDescription((acknowledged as { error_description: string }).error_description);
    await until('the exception event', () => conversation.received.length > 0);
    expect(conversation.received).toEqual([{ event: 'exception', data: acknowledged }]);
    expectNoLeak(acknowledged, [token], api.logger.lines);
  });

  it('N6 every message re-checks expiry: after exp + tolerance the next message gets invalid_token', async () => {
    const exp = Math.floor(Date.now() / 1000) + 120;
    const conversation = await connect(zone.issueToken({ scope: 'orders:read', exp }));
    expect((await conversation.ask('whoami')).event).toBe('whoami');
    api.clock.offsetMs = exp * 1000 - Date.now() + 1000;
    try {
      const answer = await conversation.ask('whoami');
      expect(answer).toMatchObject({ event: 'exception', data: { status: 'error', error: 'invalid_token' } });
      expect(answer.data).not.toHaveProperty('scope'); // whoami requires no scope (Q12)
    } finally {
      api.clock.offsetMs = 0;
    }
  });

  it('N6 (Q12) a scoped message refused 401 because the token expired → invalid_token naming the handler\'s scope', async () => {
    const exp = Math.floor(Date.now() / 1000) + 120;
    const token = zone.issueToken({ scope: 'orders:read orders:write', exp });
    const conversation = await connect(token);
    expect((await conversation.ask('place')).event).toBe('placed');
    api.clock.offsetMs = exp * 1000 - Date.now() + 1000;
    try {
      const answer = await conversation.ask('place');
      expect(answer).toMatchObject({ event: 'exception', data: { status: 'error', error: 'invalid_token', scope: 'orders:write' } });
      expectFixedDescription((answer.data as { error_description: string }).error_description);
      expectNoLeak(answer, [token], api.logger.lines);
    } finally {
      api.clock.offsetMs = 0;
    }
  });

  it('N6 a token that expires while connected → the connection ends at exp + tolerance (ws: 4401 invalid_token; socket.io: exception event, then disconnect); a later broadcast never reaches it', async () => {
    const exp = Math.floor(Date.now() / 1000) + 120;
    const token = zone.issueToken({ scope: 'orders:read', exp });
    // The module's clock 1 s before exp (tolerance 0 in this app): the real timer ends the connection about 1 s later.
    api.clock.offsetMs = exp * 1000 - Date.now() - 1000;
    try {
      const conversation = await connect(token);
      expect((await conversation.ask('whoami')).event).toBe('whoami');
      // A broadcast reaches the connection while its token is valid…
      OrdersGateway.broadcast('before-expiry');
      await until('the broadcast', () => conversation.received.some((e) => e.event === 'news'));
      const waitedFrom = Date.now();
      const ended = await within(conversation.ended, 3000);
      const waitedMs = Date.now() - waitedFrom;
      // …and none once it expired.
      OrdersGateway.broadcast('after-expiry');
      await delay(200);
      const expected =
        platform === 'ws'
          ? [{ event: 'close', data: { code: 4401, reason: 'invalid_token' } }]
          : [
              { event: 'exception', data: { status: 'error', error: 'invalid_token', error_description: 'The access token expired' } },
              { event: 'disconnect', data: 'io server disconnect' },
            ];
      expect({ ended, received: conversation.received }).toEqual({
        ended: undefined,
        received: [{ event: 'whoami', data: expect.any(String) }, { event: 'news', data: 'before-expiry' }, ...expected],
      });
      expect(waitedMs).toBeGreaterThan(500); // at expiry, not at once
      expectNoLeak(conversation.received, [token], api.logger.lines);
    } finally {
      api.clock.offsetMs = 0;
    }
  });

  it('N6 connections closed by their clients before expiry leave nothing pending: one unref\'d timer each, cleared', async () => {
    const setTimer = jest.spyOn(globalThis, 'setTimeout');
    const clearTimer = jest.spyOn(globalThis, 'clearTimeout');
    try {
      const before = OrdersGateway.disconnections;
      const conversations: Conversation[] = [];
      for (let i = 0; i < 5; i++) conversations.push(await connect(zone.issueToken({ scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 3600 })));
      for (const conversation of conversations) conversation.close();
      await until('the server to see 5 disconnections', () => OrdersGateway.disconnections >= before + 5);
      // The expiry timers: the only ones armed for about an hour (heartbeats and close timeouts are seconds).
      const expiryTimers = setTimer.mock.calls.flatMap(([, ms], i) => ((ms ?? 0) > 3_000_000 ? [setTimer.mock.results[i].value as NodeJS.Timeout] : []));
      expect(expiryTimers).toHaveLength(5);
      const cleared = new Set(clearTimer.mock.calls.map(([timer]) => timer));
      expect(expiryTimers.map((timer) => ({ cleared: cleared.has(timer), keepsProcessAlive: timer.hasRef() }))).toEqual(
        Array(5).fill({ cleared: true, keepsProcessAlive: false }),
      );
    } finally {
      setTimer.mockRestore();
      clearTimer.mockRestore();
    }
  });

  it('N6 each message is judged once by the module\'s guard on either Nest major (NestJS 11 runs no APP_GUARD on gateways, 12 does)', async () => {
    const conversation = await connect(zone.issueToken({ client_id: 'agent-once', sub: 'fay', scope: 'orders:read' }));
    const judge = jest.spyOn(api.app.get(KeycardGuard), 'canActivate');
    try {
      expect(await conversation.ask('whoami')).toEqual({ event: 'whoami', data: 'agent-once/fay' });
      expect(await conversation.ask('place')).toMatchObject({ event: 'exception', data: { error: 'insufficient_scope', scope: 'orders:write' } });
      expect(judge).toHaveBeenCalledTimes(2);
    } finally {
      judge.mockRestore();
    }
  });

  it('N8 @Public() message handler is served on a verified connection, whatever the scopes', async () => {
    const conversation = await connect(zone.issueToken({ scope: 'profile' }));
    expect(await conversation.ask('ping')).toEqual({ event: 'pong', data: 'pong' });
  });

  it('N10 refusals of messages are logged with the event pattern and audited, never with the token', async () => {
    const token = zone.issueToken({ client_id: 'agent-audit', scope: 'orders:read' });
    const conversation = await connect(token);
    await conversation.ask('place');
    expect(api.logger.lines.some((l) => l.startsWith('denied ws place status=403 reason=insufficient_scope agent=agent-audit'))).toBe(true);
    const audit = api.logger.lines.filter((l) => l.includes('"agent":"agent-audit"')).map((l) => auditV1(JSON.parse(l)));
    expect(audit).toEqual([
      expect.objectContaining({ method: 'WS', route: `connection ${platform}`, status: 101 }),
      expect.objectContaining({ method: 'WS', route: 'place', status: 403, reason: 'insufficient_scope' }),
    ]);
    expect(api.logger.lines.some((l) => l.includes(token))).toBe(false);
  });

  it('audit: every handshake has a record — refused (401 none, 401 forged, 400 two tokens, 503 zone down) with status and reason, no agent; opened (101) with its agent; never a token', async () => {
    const valid = zone.issueToken({ client_id: 'agent-hs', sub: 'carol', sid: 'sess-hs', scope: 'orders:read' });
    const fake = forged(zone.issueToken({ client_id: 'agent-forger', scope: 'orders:read' }));
    const before = api.logger.lines.length;
    const refusals = [await connect(), await connect(fake), await connect(valid, fake)];
    // A key the module has not seen while the zone's JWKS fails, past the refetch cooldown: the refetch fails, 503.
    zone.faults.jwks = { kind: 'status', status: 500 };
    const unseen = zone.issueToken({ client_id: 'agent-hs', scope: 'orders:read' }, { kid: zone.rotateKeys() });
    api.clock.offsetMs = 31_000;
    try {
      refusals.push(await connect(unseen));
    } finally {
      api.clock.offsetMs = 0;
      zone.reset();
    }
    const opened = await connect(valid);
    expect(opened.refused).toBeUndefined();
    expect(await opened.ask('whoami')).toEqual({ event: 'whoami', data: 'agent-hs/carol' });
    // What each client saw.
    if (platform === 'ws') expect(refusals.map((c) => c.refused?.status)).toEqual([401, 401, 400, 503]);
    else expect(refusals.map((c) => c.refused?.message)).toEqual(['unauthorized', 'invalid_token', 'invalid_request', 'temporarily_unavailable']);
    const refused = (status: number, reason: string) => ({
      event: 'keycard.audit', method: 'WS', route: `connection ${platform}`, status, reason, durationMs: expect.any(Number),
    });
    expect(auditSince(api, before)).toEqual([
      refused(401, 'no_credentials'),
      refused(401, 'signature_invalid'),
      refused(400, 'multiple_tokens'),
      refused(503, 'zone_unavailable'),
      {
        event: 'keycard.audit', issuer: zone.issuer, agent: 'agent-hs', user: 'carol', session: 'sess-hs', scopes: ['orders:read'], tokenId: expect.any(String),
        method: 'WS', route: `connection ${platform}`, status: 101, durationMs: expect.any(Number),
      },
      expect.objectContaining({ agent: 'agent-hs', method: 'WS', route: 'whoami', status: 200 }),
    ]);
    expectNoLeak([...refusals, opened].map((c) => c.refused), [valid, fake, unseen], api.logger.lines);
  });

  it('N6 a message refused because the connection\'s token expired names that agent in the denial line and the audit record', async () => {
    const exp = Math.floor(Date.now() / 1000) + 120;
    const token = zone.issueToken({ client_id: 'agent-exp', sub: 'dave', scope: 'orders:read', exp });
    const conversation = await connect(token);
    const before = api.logger.lines.length;
    api.clock.offsetMs = exp * 1000 - Date.now() + 1000;
    try {
      expect(await conversation.ask('whoami')).toMatchObject({ event: 'exception', data: { status: 'error', error: 'invalid_token' } });
    } finally {
      api.clock.offsetMs = 0;
    }
    const lines = api.logger.lines.slice(before);
    expect(lines.filter((l) => l.startsWith('denied '))).toEqual([expect.stringMatching(/^denied ws whoami status=401 reason=expired agent=agent-exp user=dave jti=\S+$/)]);
    expect(auditSince(api, before)).toEqual([{
      event: 'keycard.audit', issuer: zone.issuer, agent: 'agent-exp', user: 'dave', scopes: ['orders:read'], tokenId: expect.any(String),
      method: 'WS', route: 'whoami', status: 401, reason: 'expired', durationMs: expect.any(Number),
    }]);
    expectNoLeak(lines, [token], api.logger.lines);
  });
});

/** The audit records written since line `from`, parsed. */
function auditSince(api: WsApp, from: number): Record<string, unknown>[] {
  return auditRecordsV1(api.logger.lines.slice(from));
}

describe.each<[Platform]>([['ws'], ['socket.io']])('WebSocket gateway over %s, anonymous connections allowed', (platform) => {
  let zone: TestZone;
  let api: WsApp;
  const open: Conversation[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startWsApp(zone, platform, { allowAnonymous: true });
  });
  afterAll(async () => {
    for (const conversation of open) conversation.close();
    await api?.app.close();
    await zone?.stop();
  });

  it('N8 @Public() handler served without a token; a protected one answers an exception event', async () => {
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port);
    open.push(conversation);
    expect(conversation.refused).toBeUndefined();
    expect(await conversation.ask('ping')).toEqual({ event: 'pong', data: 'pong' });
    const answer = await conversation.ask('whoami');
    expect(answer.event).toBe('exception');
    expect(answer.data).toEqual({ status: 'error', error_description: 'Authentication is required' });
    expectNoLeak(answer, [], api.logger.lines);
    // The connection was opened through guard(): no hint meant for gateways without it.
    expect(api.logger.lines.filter((l) => l.includes('KeycardConnections.guard('))).toEqual([]);
  });

  it('N8 an anonymous connection has no token, so no expiry: it stays open, broadcasts reach it', async () => {
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port);
    open.push(conversation);
    expect(conversation.refused).toBeUndefined();
    api.clock.offsetMs = 365 * 24 * 3600 * 1000; // a year later, by the module's clock
    try {
      expect(await within(conversation.ended, 300)).toBe('pending');
      OrdersGateway.broadcast('for-everyone');
      await until('the broadcast', () => conversation.received.length > 0);
      expect(await conversation.ask('ping')).toEqual({ event: 'pong', data: 'pong' });
      expect(conversation.received).toEqual([{ event: 'news', data: 'for-everyone' }, { event: 'pong', data: 'pong' }]);
    } finally {
      api.clock.offsetMs = 0;
    }
  });

  it('N8 (Q12) a scoped handler refused to an anonymous connection names its scope, no OAuth error', async () => {
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port);
    open.push(conversation);
    const answer = await conversation.ask('place');
    expect(answer).toEqual({ event: 'exception', data: { status: 'error', error_description: 'Authentication is required', scope: 'orders:write' } });
  });

  itUnless(platform === 'socket.io' ? undefined : "socket.io only: its `auth` is JSON from the client; a ws handshake's header is always a string")('N6 socket.io: a token that is no string (auth.token 12345, [], {}) is refused at the handshake, not taken for no token', async () => {
    for (const token of [12345, ['x'], { a: 1 }]) {
      const refused = await new Promise<{ message: string; data?: unknown } | undefined>((resolve) => {
        const socket: Socket = io(`http://127.0.0.1:${api.port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
        socket.on('connect', () => {
          socket.disconnect();
          resolve(undefined);
        });
        socket.on('connect_error', (error: Error & { data?: unknown }) => resolve({ message: error.message, data: error.data }));
      });
      expect({ token, refused }).toEqual({ token, refused: { message: 'invalid_token', data: expect.objectContaining({ error: 'invalid_token' }) } });
    }
  });

  it('audit: an anonymous connection is recorded opened (101) without an agent', async () => {
    const before = api.logger.lines.length;
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port);
    open.push(conversation);
    expect(await conversation.ask('ping')).toEqual({ event: 'pong', data: 'pong' });
    expect(auditSince(api, before)).toEqual([{ event: 'keycard.audit', method: 'WS', route: `connection ${platform}`, status: 101, durationMs: expect.any(Number) }]);
  });

  it('N6 a forged token is still refused at the handshake', async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port, token);
    open.push(conversation);
    expect(conversation.refused).toBeDefined();
    expectNoLeak(conversation.refused, [token], api.logger.lines);
  });
});

describe('WebSocket gateway over socket.io in development mode (no resource configured, catalogue Q15)', () => {
  let zone: TestZone;
  let api: WsApp;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    zone = await TestZone.start();
    api = await startWsApp(zone, 'socket.io', { resource: null });
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await api?.app.close();
    await zone?.stop();
  });

  /** A socket.io client with its default transports (long-polling first, then the upgrade), as the README's clients are. */
  async function connectDefault(token: string): Promise<{ socket: Socket; opened?: string; refused?: { message: string; data?: unknown } }> {
    const socket = io(`http://127.0.0.1:${api.port}`, { auth: { token }, reconnection: false, forceNew: true });
    sockets.push(socket);
    // The transport the connection opened with (the engine upgrades on its own soon after).
    let opened: string | undefined;
    socket.io.once('open', () => (opened = socket.io.engine.transport.name));
    return new Promise((resolve) => {
      socket.on('connect', () => resolve({ socket, opened }));
      socket.on('connect_error', (error: Error & { data?: unknown }) => resolve({ socket, opened, refused: { message: error.message, data: error.data } }));
    });
  }

  function answer(socket: Socket, event: string): Promise<{ event: string; data: unknown }> {
    return new Promise((resolve) => {
      socket.onAny(function listener(name: string, data: unknown) {
        socket.offAny(listener);
        resolve({ event: name, data });
      });
      socket.emit(event, {});
    });
  }

  it('N6 a default client (long-polling, then WebSocket) is judged against the derived loopback resource: admitted, @Agent() set, scopes checked on each transport', async () => {
    const token = zone.issueToken({ aud: `http://127.0.0.1:${api.port}`, client_id: 'agent-dev', sub: 'erin', scope: 'orders:read' });
    const { socket, opened, refused } = await connectDefault(token);
    expect({ opened, refused }).toEqual({ opened: 'polling', refused: undefined });
    expect(await answer(socket, 'whoami')).toEqual({ event: 'whoami', data: 'agent-dev/erin' });
    if (socket.io.engine.transport.name === 'polling') await new Promise((upgraded) => socket.io.engine.once('upgrade', upgraded));
    expect(socket.io.engine.transport.name).toBe('websocket');
    expect(await answer(socket, 'whoami')).toEqual({ event: 'whoami', data: 'agent-dev/erin' });
    expect(await answer(socket, 'place')).toMatchObject({ event: 'exception', data: { status: 'error', error: 'insufficient_scope', scope: 'orders:write' } });
    expect(api.logger.lines.filter((line) => /resource|loopback|misconfigured/i.test(line))).toEqual([]);
    expectNoLeak(socket.io.engine.transport.name, [token], api.logger.lines);
  });

  it('N6 a token for another resource is refused at the handshake with invalid_token, over long-polling too', async () => {
    const token = zone.issueToken({ aud: R, scope: 'orders:read' });
    const { opened, refused } = await connectDefault(token);
    expect({ opened, refused }).toEqual({ opened: 'polling', refused: { message: 'invalid_token', data: expect.objectContaining({ error: 'invalid_token' }) } });
    expectNoLeak(refused, [token], api.logger.lines);
  });
});

describe('WebSocket gateway over ws without the connection hooks', () => {
  let zone: TestZone;
  let api: WsApp;
  let conversation: Conversation | undefined;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startWsApp(zone, 'ws', { guarded: false });
  });
  afterAll(async () => {
    conversation?.close();
    await api?.app.close();
    await zone?.stop();
  });

  it('N8 protected messages refused with an exception event, one log line says how to enable it; @Public() served', async () => {
    conversation = await connectWs(api.port, zone.issueToken({ scope: 'orders:read' }));
    for (let i = 0; i < 2; i++) {
      const answer = await conversation.ask('whoami');
      expect(answer).toMatchObject({ event: 'exception', data: { status: 'error', error_description: 'Authentication is required' } });
    }
    const hints = api.logger.lines.filter((l) => l.includes('KeycardConnections.guard('));
    expect(hints).toHaveLength(1);
    expect(await conversation.ask('ping')).toEqual({ event: 'pong', data: 'pong' });
  });
});

describe.each<[Platform]>([['ws'], ['socket.io']])('WebSocket gateway over %s in two apps at once (one gateway class)', (platform) => {
  let zone: TestZone;
  const apps: WsApp[] = [];
  const open: Conversation[] = [];
  const connect = async (api: WsApp, token?: string) => {
    const conversation = await (platform === 'ws' ? connectWs : connectIo)(api.port, token);
    open.push(conversation);
    return conversation;
  };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterEach(async () => {
    for (const conversation of open.splice(0)) conversation.close();
    for (const api of apps.splice(0)) await api.app.close();
  });
  afterAll(async () => {
    await zone?.stop();
  });

  it('N6 with KeycardConnections.guard(): each message is judged and audited by the app its socket was opened in', async () => {
    apps.push(await startWsApp(zone, platform), await startWsApp(zone, platform));
    const [a, b] = apps;
    const token = zone.issueToken({ client_id: 'agent-two', sub: 'gus', scope: 'orders:read' });
    const conversation = await connect(b, token);
    expect(await conversation.ask('whoami')).toEqual({ event: 'whoami', data: 'agent-two/gus' });
    expect(await conversation.ask('place')).toMatchObject({ event: 'exception', data: { error: 'insufficient_scope', scope: 'orders:write' } });
    const routes = (api: WsApp) => auditSince(api, 0).map((record) => `${String(record.route)} ${String(record.status)}`);
    expect({ a: routes(a), b: routes(b) }).toEqual({ a: [], b: [`connection ${platform} 101`, 'whoami 200', 'place 403'] });
  });

  it('N6 without the connection hooks: a message its token does not allow is never served; it is refused with an exception event (ws: a log line says how to enable them)', async () => {
    apps.push(await startWsApp(zone, platform, { guarded: false }), await startWsApp(zone, platform, { guarded: false }));
    const token = zone.issueToken({ scope: 'orders:read' });
    for (const api of apps) {
      const answer = await (await connect(api, token)).ask('place');
      expect(answer).toMatchObject({ event: 'exception', data: { status: 'error' } });
      expectFixedDescription((answer.data as { error_description: string }).error_description);
      // socket.io keeps its handshake, so the token is judged per message; a ws client keeps nothing of it.
      if (platform === 'ws') expect(api.logger.lines.filter((line) => line.includes('KeycardConnections.guard('))).toHaveLength(1);
      expectNoLeak(answer, [token], api.logger.lines);
    }
  });
});
