/**
 * One lifecycle for socket carriers (catalogue O6–O9, decisions Q18, Q21): `ws` and socket.io
 * gateways wrapped by `KeycardConnections.guard()`, socket.io with and without connection-state
 * recovery, real `ws` and `socket.io-client` clients over loopback, real time (a 2 s token,
 * `clockToleranceSeconds: 0`). The server pushes one item every 200 ms; a late item is one that
 * arrives more than 0.5 s after the token's `exp`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication, type WebSocketAdapter } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { ConnectedSocket, SubscribeMessage, WebSocketGateway, WebSocketServer } from '@nestjs/websockets';
import { setTimeout as delay } from 'node:timers/promises';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { KeycardConnections, KeycardModule } from '../lib/index.js';
import { CarrierLifecycle } from '../lib/decision/carrier-lifecycle.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak } from './support/contexts.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { auditRecordsV1 } from './support/audit-records.js';

const PUSH_EVERY_MS = 200;
const LATE_AFTER_MS = 500;

/** The gateway of these rows: `join` puts a socket.io client in room `orders`; the server pushes `order` items. */
function roomsGateway(options: Record<string, unknown>) {
  @WebSocketGateway(options)
  class RoomsGateway {
    /** A socket.io `Server`, or a `ws` server. */
    @WebSocketServer() server!: { to?(room: string): { emit(event: string, data: unknown): unknown }; clients?: Set<WebSocket>; opts?: { connectionStateRecovery?: { skipMiddlewares?: boolean } } };

    @SubscribeMessage('join')
    join(@ConnectedSocket() client: { join?(room: string): unknown }) {
      client.join?.('orders');
      return { event: 'joined', data: 'orders' };
    }

    /** One `order` item to room `orders` (socket.io) or to every client the server holds (`ws`, without a readyState check). */
    push(n: number) {
      if (this.server.clients instanceof Set) for (const client of this.server.clients) client.send(JSON.stringify({ event: 'order', data: n }));
      else this.server.to!('orders').emit('order', n);
    }
  }
  return RoomsGateway;
}

type Platform = 'ws' | 'socket.io';

interface SocketApp {
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
  gateway: ReturnType<typeof roomsGateway>['prototype'];
  /** Starts pushing one `order` every 200 ms; stopped after each test. */
  startPushing(): void;
  stopPushing(): void;
}

/** `adapter`: the socket.io adapter to guard (default: Nest's `IoAdapter`). */
async function startSocketApp(zone: TestZone, platform: Platform, recovery: boolean, adapter?: (app: INestApplication) => WebSocketAdapter): Promise<SocketApp> {
  const logger = new CapturingLogger();
  const Gateway = roomsGateway(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 60_000 } } : {});
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, logger, auditLog: true })],
    providers: [Gateway],
  })
  class SocketAppModule {}
  const app = await NestFactory.create(SocketAppModule, { logger: false, abortOnError: false });
  const made: WebSocketAdapter = adapter?.(app) ?? (platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app));
  app.useWebSocketAdapter(app.get(KeycardConnections).guard(made));
  await app.listen(0, '127.0.0.1').catch(async (error: unknown) => {
    await app.close().catch(() => undefined);
    throw error;
  });
  const { port } = app.getHttpServer().address() as { port: number };
  const gateway = app.get(Gateway);
  let timer: NodeJS.Timeout | undefined;
  let n = 0;
  return {
    app,
    url: `${platform === 'ws' ? 'ws' : 'http'}://127.0.0.1:${port}`,
    logger,
    gateway,
    startPushing: () => (timer ??= setInterval(() => gateway.push(n++), PUSH_EVERY_MS)),
    stopPushing: () => {
      clearInterval(timer);
      timer = undefined;
    },
  };
}

/** What a client received, each with its arrival time. */
interface Arrival {
  event: string;
  data?: unknown;
  at: number;
}

/** A `socket.io-client` socket that records everything: events, `connect` (with `recovered`), `connect_error`, `disconnect`, raw engine packets. */
function ioClient(url: string, token: string, recovering = true) {
  const socket: Socket = io(url, {
    auth: { token },
    transports: ['websocket'],
    forceNew: true,
    reconnection: recovering,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
    randomizationFactor: 0,
  });
  const received: Arrival[] = [];
  const record = (event: string, data?: unknown) => received.push({ event, data, at: Date.now() });
  socket.onAny((event: string, data: unknown) => record(event, data));
  socket.on('connect', () => record('connect', { recovered: socket.recovered }));
  socket.on('connect_error', (error: Error & { data?: unknown }) => record('connect_error', { message: error.message, data: error.data }));
  socket.on('disconnect', (reason) => record('disconnect', reason));
  return { socket, received, record };
}

/** Waits until `done()` holds, at most `ms`. @throws naming `what` when it still does not hold then. */
async function until(what: string, done: () => boolean, ms = 5000): Promise<void> {
  for (const deadline = Date.now() + ms; !done(); await delay(10)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** A token of `T0`'s shape that expires 2 s from now (whole seconds: between 1 and 2 s); its `exp` in ms. */
function shortToken(zone: TestZone, claims: Record<string, unknown> = {}) {
  const exp = Math.floor(Date.now() / 1000) + 2;
  return { token: zone.issueToken({ scope: 'orders:read', ...claims, exp }), expMs: exp * 1000 };
}

const orders = (received: readonly Arrival[]) => received.filter((a) => a.event === 'order');
const late = (received: readonly Arrival[], expMs: number) => orders(received).filter((a) => a.at > expMs + LATE_AFTER_MS);
const auditSince = (logger: CapturingLogger, from: number) =>
  auditRecordsV1(logger.lines.slice(from));

/**
 * O6–O8 through each of Q21's two mechanisms: (a) socket.io runs Keycard's middleware for a
 * recovered socket (forced `skipMiddlewares: false`); (c) where an adapter still skips it, the
 * connection handler re-judges the socket. The shapes differ (a `connect_error`, or an `exception`
 * and a disconnect); the outcome is the same.
 */
describe.each([
  ['(a) the middleware judges a recovered socket', 'a'],
  ['(c) the connection handler re-judges it (middlewares skipped)', 'c'],
] as const)('socket.io connection-state recovery: %s', (_name, mechanism) => {
  let zone: TestZone;
  let api: SocketApp;
  const clients: Socket[] = [];
  const client = (token: string, recovering?: boolean) => {
    const made = ioClient(api.url, token, recovering);
    clients.push(made.socket);
    return made;
  };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startSocketApp(zone, 'socket.io', true);
    // (a) is forced when the gateway's server is created; an adapter ignoring it is simulated here.
    if (mechanism === 'c') api.gateway.server.opts!.connectionStateRecovery!.skipMiddlewares = true;
  });
  afterEach(() => {
    api.stopPushing();
    for (const socket of clients.splice(0)) socket.disconnect();
  });
  afterAll(async () => {
    await api?.app.close();
    await zone?.stop();
  });

  /**
   * Connects with `token`, joins `orders` while items are pushed, then breaks the transport (the
   * client's disconnect reason: `forced close`) with `auth` for the recovery; the client reconnects
   * at once unless it `staysAway` (then `socket.connect()` brings it back).
   */
  async function joinThenBreak(token: string, auth: Record<string, unknown>, staysAway = false) {
    const alice = client(token);
    await until('the connection', () => alice.socket.connected);
    alice.socket.emit('join', {});
    api.startPushing();
    await until('three orders', () => orders(alice.received).length >= 3);
    alice.socket.auth = auth;
    alice.socket.io.reconnection(!staysAway);
    const brokeAt = Date.now();
    alice.record('break');
    alice.socket.io.engine.close();
    return { ...alice, brokeAt };
  }

  it('O6 a recovered socket without a token is refused; no order reaches it after the break, no late item', async () => {
    expect(api.gateway.server.opts!.connectionStateRecovery!.skipMiddlewares).toBe(mechanism === 'c');
    const { token, expMs } = shortToken(zone);
    const before = api.logger.lines.length;
    const alice = await joinThenBreak(token, {});
    await delay(Math.max(0, expMs + LATE_AFTER_MS + 1000 - Date.now()));
    const afterBreak = alice.received.slice(alice.received.findIndex((a) => a.event === 'break') + 1);
    expect(orders(afterBreak)).toEqual([]);
    expect(late(alice.received, expMs)).toEqual([]);
    const shapes = afterBreak.filter((a) => a.data !== 'forced close').map(({ event, data }) => ({ event, data }));
    if (mechanism === 'a') {
      // As for a fresh handshake without credentials: a connect_error with no `error`.
      expect(shapes).toEqual([{ event: 'connect_error', data: { message: 'unauthorized', data: { error_description: 'Authentication is required' } } }]);
    } else {
      // Connected for an instant (out of its rooms), then told why and disconnected.
      expect(shapes).toEqual([
        { event: 'connect', data: { recovered: true } },
        { event: 'exception', data: { status: 'error', error_description: 'Authentication is required' } },
        { event: 'disconnect', data: 'io server disconnect' },
      ]);
    }
    expect(auditSince(api.logger, before).map((r) => [r.status, r.reason])).toEqual([[101, undefined], [200, undefined], [401, 'no_credentials']]);
    expectNoLeak(alice.received, [token], api.logger.lines);
  });

  it('O7 recovery with a fresh token of the same principal → recovered with its rooms and the orders it missed; the timer follows the new exp', async () => {
    const { token, expMs } = shortToken(zone, { sub: 'alice', client_id: 'agent-a' });
    const fresh = zone.issueToken({ scope: 'orders:read', sub: 'alice', client_id: 'agent-a', exp: Math.floor(Date.now() / 1000) + 60 });
    const alice = await joinThenBreak(token, { token: fresh });
    await delay(Math.max(0, expMs + LATE_AFTER_MS + 1000 - Date.now()));
    const afterBreak = alice.received.slice(alice.received.findIndex((a) => a.event === 'break') + 1);
    expect(afterBreak.filter((a) => a.event !== 'order').map(({ event, data }) => ({ event, data }))).toEqual([
      { event: 'disconnect', data: 'forced close' },
      { event: 'connect', data: { recovered: true } },
    ]);
    // Still in `orders` after the old token's exp, and every order arrived once, none lost in the break.
    expect(late(alice.received, expMs).length).toBeGreaterThan(0);
    const numbers = orders(alice.received).map((a) => a.data as number);
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0] + i));
    // One binding, the recovered socket's (the broken one's was closed with it).
    expect(api.app.get(CarrierLifecycle).size).toBe(1);
    expectNoLeak(alice.received, [token, fresh], api.logger.lines);
  });

  it("O8 recovery carrying alice's pid/offset and bob's valid token → refused, not one of alice's room items reaches bob; alice recovers afterwards", async () => {
    const aliceToken = zone.issueToken({ scope: 'orders:read', sub: 'alice', client_id: 'agent-a' });
    // Alice stays away: her session waits, with the orders she misses.
    const alice = await joinThenBreak(aliceToken, { token: aliceToken }, true);
    const { _pid: pid, _lastOffset: offset } = alice.socket as unknown as { _pid: string; _lastOffset: string };
    expect(typeof pid).toBe('string');
    await delay(3 * PUSH_EVERY_MS);
    const before = api.logger.lines.length;
    const bobToken = zone.issueToken({ scope: 'orders:read', sub: 'bob', client_id: 'agent-b' });
    const bob = io(api.url, { auth: { token: bobToken, pid, offset }, transports: ['websocket'], forceNew: true, reconnection: false });
    clients.push(bob);
    const wire: string[] = [];
    bob.io.engine.on('packet', (packet: { data?: unknown }) => wire.push(String(packet.data)));
    const seen: Arrival[] = [];
    bob.onAny((event: string, data: unknown) => seen.push({ event, data, at: Date.now() }));
    const outcome = await new Promise<{ connected?: { recovered: boolean; rooms?: unknown }; error?: { message: string; data: unknown } }>((resolve) => {
      bob.on('connect', () => resolve({ connected: { recovered: bob.recovered } }));
      bob.on('connect_error', (error: Error & { data?: unknown }) => resolve({ error: { message: error.message, data: error.data } }));
    });
    await delay(3 * PUSH_EVERY_MS);
    if (mechanism === 'a') {
      expect(outcome).toEqual({ error: { message: 'invalid_request', data: { error: 'invalid_request', error_description: 'The request is malformed' } } });
    } else {
      // Connected for an instant, out of alice's rooms (the client's own `recovered` flag only compares pids it was given).
      expect(outcome).toEqual({ connected: { recovered: false } });
      expect(seen.map(({ event, data }) => ({ event, data }))).toEqual([{ event: 'exception', data: { status: 'error', error: 'invalid_request', error_description: 'The request is malformed' } }]);
    }
    expectFixedDescription('The request is malformed');
    // Not on the wire either: the orders alice missed were never written to bob's connection.
    expect(wire.filter((frame) => frame.includes('order'))).toEqual([]);
    expect(auditSince(api.logger, before)).toEqual([
      { event: 'keycard.audit', method: 'WS', route: 'connection socket.io', status: 400, reason: 'session_principal_mismatch', durationMs: expect.any(Number) },
    ]);
    // The session is left to its owner: alice recovers it, with the orders she missed.
    const missedFrom = orders(alice.received).length;
    alice.socket.connect();
    await until('alice back', () => alice.socket.connected);
    await until('the orders alice missed', () => orders(alice.received).length > missedFrom + 5);
    expect(alice.received.find((a) => a.event === 'connect' && (a.data as { recovered: boolean }).recovered)).toBeDefined();
    const numbers = orders(alice.received).map((a) => a.data as number);
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0] + i));
    expectNoLeak([seen, wire], [aliceToken, bobToken], api.logger.lines);
  });
});

describe.each([
  ['ws', 'ws', false],
  ['socket.io', 'socket.io', false],
  ['socket.io with connection-state recovery', 'socket.io', true],
] as const)('O9 expiry of a %s connection', (_name, platform, recovery) => {
  let zone: TestZone;
  let api: SocketApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startSocketApp(zone, platform, recovery);
  });
  afterAll(async () => {
    api?.stopPushing();
    await api?.app.close();
    await zone?.stop();
  });

  it(`O9 ${platform}${recovery ? ' (recovery on)' : ''}: items pushed every 200 ms for 4 s to a 2 s token → none late; ${platform === 'ws' ? 'closed 4401 invalid_token' : 'exception invalid_token, then io server disconnect'}`, async () => {
    const { token, expMs } = shortToken(zone);
    let received: Arrival[];
    let socket: Socket | undefined;
    let ws: WebSocket | undefined;
    if (platform === 'ws') {
      received = [];
      const got = received;
      ws = new WebSocket(api.url, { headers: { authorization: `Bearer ${token}` } });
      ws.on('message', (raw) => got.push({ ...(JSON.parse(String(raw)) as { event: string; data: unknown }), at: Date.now() }));
      ws.on('close', (code, reason) => got.push({ event: 'close', data: { code, reason: reason.toString() }, at: Date.now() }));
      await new Promise((resolve) => ws!.once('open', resolve));
    } else {
      const made = ioClient(api.url, token, false);
      ({ socket, received } = made);
      await until('the connection', () => socket!.connected);
      socket.emit('join', {});
      await until('joined', () => made.received.some((a) => a.event === 'joined'));
    }
    const startedAt = Date.now();
    api.startPushing();
    await delay(Math.max(0, startedAt + 4000 - Date.now()));
    api.stopPushing();
    socket?.disconnect();
    ws?.terminate();
    expect(orders(received).filter((a) => a.at <= expMs).length).toBeGreaterThan(0);
    expect(late(received, expMs)).toEqual([]);
    const ending = received.filter((a) => a.event !== 'order' && a.event !== 'joined' && a.event !== 'connect');
    expect(ending.map(({ event, data }) => ({ event, data }))).toEqual(
      platform === 'ws'
        ? [{ event: 'close', data: { code: 4401, reason: 'invalid_token' } }]
        : [
            { event: 'exception', data: { status: 'error', error: 'invalid_token', error_description: 'The access token expired' } },
            { event: 'disconnect', data: 'io server disconnect' },
          ],
    );
    // Ended at expiry, not before it.
    expect(ending[0].at).toBeGreaterThanOrEqual(expMs);
    expect(api.app.get(CarrierLifecycle).size).toBe(0);
    expectNoLeak(received, [token], api.logger.lines);
  });
});

describe('socket.io connection-state recovery that Keycard cannot bind', () => {
  let zone: TestZone;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  /** An adapter without session support (as an older or third-party one): socket.io would recover sockets Keycard cannot see. */
  class SessionlessIoAdapter extends IoAdapter {
    override createIOServer(...args: Parameters<IoAdapter['createIOServer']>) {
      const server = super.createIOServer(...args);
      (server.of('/').adapter as unknown as Record<string, unknown>).restoreSession = undefined;
      return server;
    }
  }

  it('Q21 (O6) recovery on, but neither (a) nor (c) possible → the app refuses to start, with a message saying why and what to do', async () => {
    await expect(startSocketApp(zone, 'socket.io', true, (app) => new SessionlessIoAdapter(app))).rejects.toThrow(
      'KeycardConnections.guard(): socket.io connectionStateRecovery is on, but its adapter offers no persistSession/restoreSession',
    );
  });
});
