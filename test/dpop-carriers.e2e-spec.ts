/**
 * DPoP on carriers other than one HTTP request (catalogue H26, decision Q39), with real clients on
 * loopback: a `ws` gateway verifies the proof of its upgrade request at open (`htm` GET, `htu` = the
 * public origin + the upgrade path) and ends the connection at `exp`; gRPC verifies one proof per
 * call (`htm` POST, `htu` = the public origin + the method path); a DPoP-bound token that travels in
 * a payload (socket.io `auth`, TCP with `rpcTokenExtractor`) is refused with a fixed description.
 * graphql-ws `connectionParams` (H26 (c)) is in test/dpop-doors.e2e-spec.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, type INestApplication, type WebSocketAdapter } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, GrpcStreamCall, MessagePattern, Payload, type ClientProxy } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { fileURLToPath } from 'node:url';
import { lastValueFrom } from 'rxjs';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { Agent, DpopKey, KEYCARD_CLOCK, KeycardConnections, KeycardModule, RequireScopes, type KeycardModuleOptions } from '../lib/index.js';
import type { Clock } from '../lib/clock.js';
import type { TokenCipherKey } from '../lib/redis/index.js';
import { randomBytes } from 'node:crypto';
import { ERROR_DESCRIPTIONS } from '../lib/resource-server/keycard.exceptions.js';
import { parseWwwAuthenticate } from '../lib/www-authenticate.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { CountingReplayStore } from './support/dpop.js';
import { PRM, R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { listenHybrid, watchOnce } from './support/rpc-app.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
const ALGS = 'ES256 PS256';
const key = DpopKey.generate();

@WebSocketGateway()
class OrdersGateway {
  @RequireScopes('orders:read')
  @SubscribeMessage('orders')
  orders(@Agent('clientId') clientId: string) {
    return { event: 'orders', data: { by: clientId } };
  }
}

@Controller()
class OrdersRpcController {
  @RequireScopes('orders:read')
  @GrpcMethod('Orders', 'Find')
  find(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
    return { id: request.id, by: clientId };
  }

  /** A duplex stream handled on the raw call: its metadata and `:path` are the call's. */
  @RequireScopes('orders:read')
  @GrpcStreamCall('Orders', 'Watch')
  watch(call: grpc.ServerDuplexStream<{ id: string }, { id: string; by: string }>) {
    call.on('data', (request: { id: string }) => call.write({ id: request.id, by: 'stream' }));
    call.on('end', () => call.end());
  }

  @MessagePattern('orders.find')
  findOverTcp(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
    return { id: request.id, by: clientId };
  }
}

interface Running {
  app: INestApplication;
  port: number;
  logger: CapturingLogger;
  replay: CountingReplayStore;
}

/** An app with DPoP `allowed`, `clockToleranceSeconds: 0` (a connection ends at `exp` exactly) and a counted replay store. */
async function startApp(parts: { providers?: unknown[]; controllers?: unknown[]; extra?: Partial<KeycardModuleOptions> }, zone: TestZone) {
  const logger = new CapturingLogger();
  const replay = new CountingReplayStore();
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, logger, dpop: { mode: 'allowed', replayStore: replay }, ...parts.extra })],
    providers: (parts.providers ?? []) as never[],
    controllers: (parts.controllers ?? []) as never[],
  })
  class CarrierAppModule {}
  const app = await NestFactory.create(CarrierAppModule, { logger: false, abortOnError: false });
  return { app, logger, replay };
}

/** The gateway app over `adapter`, guarded by `KeycardConnections.guard()`, listening on loopback. */
async function startGatewayApp(zone: TestZone, adapter: (app: INestApplication) => WebSocketAdapter): Promise<Running> {
  const { app, logger, replay } = await startApp({ providers: [OrdersGateway] }, zone);
  app.useWebSocketAdapter(app.get(KeycardConnections).guard(adapter(app)));
  await app.listen(0, '127.0.0.1');
  return { app, logger, replay, port: (app.getHttpServer().address() as { port: number }).port };
}

/** What a `ws` upgrade produced: opened (then the messages and close), or refused with an HTTP answer. */
interface WsOutcome {
  socket: WebSocket;
  refused?: { status?: number; challenges: Map<string, ReadonlyMap<string, string>>; body: string };
  closed: Promise<{ code: number; reason: string }>;
}

function connectWs(port: number, path: string, headers: Record<string, string>): Promise<WsOutcome> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
  const closed = new Promise<{ code: number; reason: string }>((done) => socket.on('close', (code, reason) => done({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    socket.on('open', () => resolve({ socket, closed }));
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        const value = res.headers['www-authenticate'];
        const parsed = typeof value === 'string' ? parseWwwAuthenticate(value) ?? [] : [];
        resolve({ socket, closed, refused: { status: res.statusCode, challenges: new Map(parsed.map((c) => [c.scheme.toLowerCase(), c.params])), body } });
      });
    });
    socket.on('error', (error) => {
      if (!String(error.message).includes('Unexpected server response')) reject(error);
    });
  });
}

function ask(socket: WebSocket, event: string): Promise<{ event: string; data: unknown }> {
  return new Promise((answer) => {
    socket.once('message', (raw) => answer(JSON.parse(String(raw)) as { event: string; data: unknown }));
    socket.send(JSON.stringify({ event, data: {} }));
  });
}

describe('H26 (a) DPoP at a ws upgrade', () => {
  let zone: TestZone;
  let api: Running;
  const sockets: WebSocket[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGatewayApp(zone, (app) => new WsAdapter(app));
  });
  afterAll(async () => {
    for (const socket of sockets) socket.terminate();
    await api?.app.close();
    await zone?.stop();
  });

  const open = async (headers: Record<string, string>, path = '/?ticket=1') => {
    const outcome = await connectWs(api.port, path, headers);
    sockets.push(outcome.socket);
    return outcome;
  };
  /** `Authorization: DPoP <token>` and a proof for GET on the public origin + the path (no query). */
  const dpop = (token: string, proof: { method?: string; path?: string } = {}) => ({
    authorization: `DPoP ${token}`,
    dpop: key.proof({ method: proof.method ?? 'GET', url: `${R}${proof.path ?? '/'}`, accessToken: token }),
  });

  function expectRefused(outcome: WsOutcome, expected: { dpopError?: string; bearerError?: string; description: string }, secrets: string[]) {
    expect(outcome.refused?.status).toBe(401);
    const { challenges } = outcome.refused!;
    expect(challenges.get('dpop')?.get('algs')).toBe(ALGS);
    expect(challenges.get('dpop')?.get('error')).toBe(expected.dpopError);
    expect(challenges.get('bearer')?.get('error')).toBe(expected.bearerError);
    for (const challenge of challenges.values()) expect(challenge.get('resource_metadata')).toBe(PRM);
    const description = challenges.get(expected.dpopError === undefined ? 'bearer' : 'dpop')?.get('error_description');
    expect(description).toBe(expected.description);
    expectNoLeak({ body: outcome.refused!.body, challenges: [...challenges.values()].map((c) => [...c]) }, secrets, api.logger.lines);
  }

  it('H26 (a) Authorization: DPoP + a proof for GET <public origin>/<upgrade path> (query dropped) → opens, one replay record; messages are served without a proof', async () => {
    const token = zone.tokenFor({ agent: 'agent-ws', scopes: ['orders:read'], dpopKey: key });
    const before = api.replay.keys.length;
    const outcome = await open(dpop(token));
    expect(outcome.refused).toBeUndefined();
    expect(api.replay.keys.length - before).toBe(1);
    expect(await ask(outcome.socket, 'orders')).toEqual({ event: 'orders', data: { by: 'agent-ws' } });
    expect(await ask(outcome.socket, 'orders')).toEqual({ event: 'orders', data: { by: 'agent-ws' } });
    expect(api.replay.keys.length - before).toBe(1); // checked at open only
    expectNoLeak(api.logger.lines, [token], api.logger.lines);
  });

  it('H26 (a) the connection ends at the token\'s exp (as O9): close 4401 invalid_token', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = zone.tokenFor({ agent: 'agent-ws', scopes: ['orders:read'], dpopKey: key, claims: { exp } });
    const outcome = await open(dpop(token));
    expect(outcome.refused).toBeUndefined();
    expect(await outcome.closed).toEqual({ code: 4401, reason: 'invalid_token' });
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
  });

  it('H26 (a) the same proof at a second upgrade → 401 DPoP error="invalid_dpop_proof"', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const headers = dpop(token);
    expect((await open(headers)).refused).toBeUndefined();
    expectRefused(await open(headers), { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof }, [token, headers.dpop]);
  });

  it('H26 (a) no proof; a proof for POST; a proof for another path → 401 invalid_dpop_proof, nothing stored', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const before = api.replay.keys.length;
    for (const headers of [{ authorization: `DPoP ${token}` }, dpop(token, { method: 'POST' }), dpop(token, { path: '/other' })]) {
      expectRefused(await open(headers), { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof }, [token]);
    }
    expect(api.replay.keys.length - before).toBe(0);
  });

  it('H26 (a) a proof by another key → 401 DPoP invalid_token "Invalid DPoP key binding"; a DPoP-bound token as Bearer → 401 Bearer invalid_token', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const other = DpopKey.generate();
    const mismatch = { authorization: `DPoP ${token}`, dpop: other.proof({ method: 'GET', url: `${R}/`, accessToken: token }) };
    expectRefused(await open(mismatch), { dpopError: 'invalid_token', description: ERROR_DESCRIPTIONS.dpopBinding }, [token]);
    expectRefused(await open({ authorization: `Bearer ${token}` }), { bearerError: 'invalid_token', description: ERROR_DESCRIPTIONS.dpopScheme }, [token]);
  });

  it('H26 (a) a Bearer token without cnf still opens (mode allowed)', async () => {
    const token = zone.tokenFor({ agent: 'agent-plain', scopes: ['orders:read'] });
    const outcome = await open({ authorization: `Bearer ${token}` });
    expect(outcome.refused).toBeUndefined();
    expect(await ask(outcome.socket, 'orders')).toEqual({ event: 'orders', data: { by: 'agent-plain' } });
  });
});

describe('H26 (b) DPoP-bound token in a socket.io handshake', () => {
  let zone: TestZone;
  let api: Running;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGatewayApp(zone, (app) => new IoAdapter(app));
  });
  afterAll(async () => {
    await api?.app.close();
    await zone?.stop();
  });

  it('H26 (b) auth.token = a DPoP-bound token → connect_error invalid_token "DPoP-bound tokens need the DPoP scheme on an HTTP request", nothing leaked', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const socket = io(`http://127.0.0.1:${api.port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    const refused = await new Promise<Error & { data?: unknown }>((resolve, reject) => {
      socket.once('connect_error', resolve);
      socket.once('connect', () => reject(new Error('connected')));
    }).finally(() => socket.disconnect());
    expect({ message: refused.message, data: refused.data }).toEqual({
      message: 'invalid_token',
      data: { error: 'invalid_token', error_description: 'DPoP-bound tokens need the DPoP scheme on an HTTP request' },
    });
    expect(api.logger.lines.some((line) => line.includes('denied socket.io connection status=401 reason=dpop_carrier_unsupported'))).toBe(true);
    expectNoLeak(refused.data, [token], api.logger.lines);
  });
});

type Unary = (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, reply?: unknown) => void) => void;

describe('H26 (d) gRPC and (e) TCP', () => {
  let zone: TestZone;
  let api: Running;
  let tcp: ClientProxy;
  let client: grpc.Client & { Find: Unary };
  const FIND = '/orders.Orders/Find';

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    const { app, logger, replay } = await startApp({
      controllers: [OrdersRpcController],
      extra: { rpcTokenExtractor: (context) => context.switchToRpc().getData<{ accessToken?: string }>()?.accessToken },
    }, zone);
    const hybrid = await listenHybrid(app, PROTO);
    tcp = hybrid.tcp;
    api = { app, logger, replay, port: 0 };
    const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
    client = new orders(hybrid.grpcUrl, grpc.credentials.createInsecure()) as never;
  });
  afterAll(async () => {
    client?.close();
    await tcp?.close();
    await api?.app.close();
    await zone?.stop();
  });

  function find(entries: [string, string][]) {
    const metadata = new grpc.Metadata();
    for (const [name, value] of entries) metadata.add(name, value);
    return new Promise<{ error: grpc.ServiceError | null; reply?: unknown }>((resolve) => client.Find({ id: 'o-1' }, metadata, (error, reply) => resolve({ error, reply })));
  }
  const proofFor = (token: string, path = FIND, signer = key) => signer.proof({ method: 'POST', url: `${R}${path}`, accessToken: token });

  function expectRefused(error: grpc.ServiceError | null, expected: { dpopError?: string; bearerError?: string; description: string }, secrets: string[]) {
    expect({ code: error?.code, details: error?.details }).toEqual({ code: grpc.status.UNAUTHENTICATED, details: expected.description });
    const value = error!.metadata.get('www-authenticate')[0];
    const challenges = new Map((parseWwwAuthenticate(String(value)) ?? []).map((c) => [c.scheme.toLowerCase(), c.params]));
    expect(challenges.get('dpop')?.get('algs')).toBe(ALGS);
    expect(challenges.get('dpop')?.get('error')).toBe(expected.dpopError);
    expect(challenges.get('bearer')?.get('error')).toBe(expected.bearerError);
    expectNoLeak({ details: error!.details, metadata: error!.metadata.getMap() }, secrets, api.logger.lines);
  }

  it('H26 (d) authorization: DPoP + dpop: a proof for POST <public origin>/orders.Orders/Find → served, one replay record; the replay → UNAUTHENTICATED invalid_dpop_proof', async () => {
    const token = zone.tokenFor({ agent: 'agent-grpc', scopes: ['orders:read'], dpopKey: key });
    const proof = proofFor(token);
    const before = api.replay.keys.length;
    const { error, reply } = await find([['authorization', `DPoP ${token}`], ['dpop', proof]]);
    expect(error).toBeNull();
    expect(reply).toEqual({ id: 'o-1', by: 'agent-grpc' });
    expect(api.replay.keys.length - before).toBe(1);
    const replayed = await find([['authorization', `DPoP ${token}`], ['dpop', proof]]);
    expectRefused(replayed.error, { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof }, [token, proof]);
  });

  it('H26 (d) no proof; two proofs; a proof for another method path → UNAUTHENTICATED invalid_dpop_proof, nothing stored', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const before = api.replay.keys.length;
    for (const proofs of [[], [proofFor(token), proofFor(token)], [proofFor(token, '/orders.Orders/Place')]]) {
      const { error } = await find([['authorization', `DPoP ${token}`], ...proofs.map((p): [string, string] => ['dpop', p])]);
      expectRefused(error, { dpopError: 'invalid_dpop_proof', description: ERROR_DESCRIPTIONS.dpopProof }, [token]);
    }
    expect(api.replay.keys.length - before).toBe(0);
  });

  it('H26 (d) a proof by another key → DPoP invalid_token "Invalid DPoP key binding"; the bound token as Bearer → Bearer invalid_token', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const mismatch = await find([['authorization', `DPoP ${token}`], ['dpop', proofFor(token, FIND, DpopKey.generate())]]);
    expectRefused(mismatch.error, { dpopError: 'invalid_token', description: ERROR_DESCRIPTIONS.dpopBinding }, [token]);
    const asBearer = await find([['authorization', `Bearer ${token}`]]);
    expectRefused(asBearer.error, { bearerError: 'invalid_token', description: ERROR_DESCRIPTIONS.dpopScheme }, [token]);
  });

  it('H26 (d) a duplex stream (@GrpcStreamCall), whose guards Nest runs twice: a proof for POST <public origin>/orders.Orders/Watch → served, one replay record', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const before = api.replay.keys.length;
    const served = await watchOnce(client, [['authorization', `DPoP ${token}`], ['dpop', proofFor(token, '/orders.Orders/Watch')]]);
    expect({ code: served.error?.code, replies: served.replies }).toEqual({ code: undefined, replies: [{ id: 'w-1', by: 'stream' }] });
    expect(api.replay.keys.length - before).toBe(1);
  });

  it('H26 (d) a duplex stream (@GrpcStreamCall) with a proof by another key → status 16 DPoP invalid_token at once, the challenge in the trailers (was: the client waited for its deadline)', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const refused = await watchOnce(client, [['authorization', `DPoP ${token}`], ['dpop', proofFor(token, '/orders.Orders/Watch', DpopKey.generate())]]);
    expect(refused.replies).toEqual([]);
    expectRefused(refused.error ?? null, { dpopError: 'invalid_token', description: ERROR_DESCRIPTIONS.dpopBinding }, [token]);
  });

  it('H26 (e) TCP with rpcTokenExtractor: a DPoP-bound token → refused invalid_token "DPoP-bound tokens need the DPoP scheme on an HTTP request"; a plain token → served', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const error = await lastValueFrom(tcp.send('orders.find', { id: 'o-2', accessToken: token })).then(() => undefined, (e: unknown) => e);
    expect(error).toMatchObject({ code: 16, error: 'invalid_token', error_description: 'DPoP-bound tokens need the DPoP scheme on an HTTP request' });
    expectNoLeak(error, [token], api.logger.lines);
    const plain = zone.tokenFor({ agent: 'agent-tcp', scopes: ['orders:read'] });
    expect(await lastValueFrom(tcp.send('orders.find', { id: 'o-3', accessToken: plain }))).toEqual({ id: 'o-3', by: 'agent-tcp' });
  });
});

/**
 * Server nonces (RFC 9449 §8, §9) where a long-lived carrier opens: the refusal names a fresh nonce
 * (the 401 of a `ws` upgrade, gRPC trailers, a socket.io `connect_error`), and a nonce past half its
 * lifetime is renewed on the opening answer itself (the `ws` 101, gRPC initial metadata), as a 200
 * renews it on an HTTP route (H22). socket.io clients that send `Authorization: DPoP` in
 * `extraHeaders` have the proof of their handshake request checked (Q39: it is an HTTP request).
 */
describe('DPoP nonces and socket.io extraHeaders where a connection opens (H19, H22, H26)', () => {
  let zone: TestZone;
  const ring: TokenCipherKey[] = [{ id: 'n1', key: randomBytes(32) }];
  const clock = { offsetMs: 0 };
  const apps: INestApplication[] = [];
  const closers: (() => unknown)[] = [];
  const nonceOptions = (): Partial<KeycardModuleOptions> => ({ dpop: { mode: 'allowed', nonce: { keys: ring } } });

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    for (const close of closers) close();
    for (const app of apps) await app.close();
    await zone?.stop();
  });

  async function gatewayApp(adapter: (app: INestApplication) => WebSocketAdapter, dpop = true): Promise<Running> {
    const { app, logger, replay } = await startApp({ providers: [OrdersGateway], extra: dpop ? nonceOptions() : {} }, zone);
    app.get<Clock>(KEYCARD_CLOCK).now = () => Date.now() + clock.offsetMs;
    app.useWebSocketAdapter(app.get(KeycardConnections).guard(adapter(app)));
    await app.listen(0, '127.0.0.1');
    apps.push(app);
    return { app, logger, replay, port: (app.getHttpServer().address() as { port: number }).port };
  }
  const token = () => zone.tokenFor({ agent: 'agent-n', scopes: ['orders:read'], dpopKey: key });
  /** A nonce minted `ageMs` ago under the ring (as another instance would have issued it). */
  const nonceAged = async (ageMs: number) => new (await import('../lib/dpop/dpop-nonces.js')).DpopNonces({ keys: ring, lifetimeSeconds: 60 }).issue(Date.now() - ageMs);

  /** A `ws` upgrade; the answer's headers (the 101's or the refusal's). */
  function upgrade(port: number, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; socket: WebSocket }> {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers });
    closers.push(() => socket.terminate());
    return new Promise((resolve, reject) => {
      socket.on('upgrade', (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, socket }));
      socket.on('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, socket });
      });
      socket.on('error', (error) => {
        if (!String(error.message).includes('Unexpected server response')) reject(error);
      });
    });
  }
  const wsProof = (t: string, nonce?: string) => ({ authorization: `DPoP ${t}`, dpop: key.proof({ method: 'GET', url: `${R}/`, accessToken: t, ...(nonce && { nonce }) }) });

  it('H19 (ws) a proof without nonce at the upgrade → 401 DPoP use_dpop_nonce with DPoP-Nonce and no-store; the retry with it opens', async () => {
    const api = await gatewayApp((app) => new WsAdapter(app));
    const t = token();
    const refused = await upgrade(api.port, wsProof(t));
    expect(refused.status).toBe(401);
    const challenges = new Map((parseWwwAuthenticate(String(refused.headers['www-authenticate'])) ?? []).map((c) => [c.scheme.toLowerCase(), c.params]));
    expect(challenges.get('dpop')?.get('error')).toBe('use_dpop_nonce');
    expect(refused.headers['dpop-nonce']).toMatch(/^[\x21\x23-\x5B\x5D-\x7E]+$/);
    expect(refused.headers['cache-control']).toBe('no-store');
    expect((await upgrade(api.port, wsProof(t, String(refused.headers['dpop-nonce'])))).status).toBe(101);
    expectNoLeak(refused.headers, [t], api.logger.lines);
  });

  it('H22 (ws) a nonce past half its lifetime → the 101 carries a new DPoP-Nonce and no-store; a current nonce → no DPoP-Nonce on the 101', async () => {
    const api = await gatewayApp((app) => new WsAdapter(app));
    const aging = await upgrade(api.port, wsProof(token(), await nonceAged(31_000)));
    expect(aging.status).toBe(101);
    expect(aging.headers['dpop-nonce']).toEqual(expect.any(String));
    expect(aging.headers['cache-control']).toBe('no-store');
    const current = await upgrade(api.port, wsProof(token(), String(aging.headers['dpop-nonce'])));
    expect(current.status).toBe(101);
    expect(current.headers['dpop-nonce']).toBeUndefined();
  });

  /** A socket.io connection over `transport`; its `connect` or its `connect_error`. */
  function ioConnect(port: number, extraHeaders: Record<string, string>, transport: 'websocket' | 'polling') {
    const socket = io(`http://127.0.0.1:${port}`, { extraHeaders, transports: [transport], reconnection: false, forceNew: true });
    closers.push(() => socket.disconnect());
    const ask = () => new Promise<unknown>((answer) => {
      socket.once('orders', answer);
      socket.once('exception', answer);
      socket.emit('orders', {});
    });
    return new Promise<{ connected: boolean; error?: Error & { data?: Record<string, unknown> }; ask?: () => Promise<unknown> }>((resolve) => {
      socket.once('connect_error', (error) => resolve({ connected: false, error }));
      socket.once('connect', () => resolve({ connected: true, ask }));
    });
  }
  const ioProof = (t: string, extra: { nonce?: string; path?: string } = {}) => ({
    authorization: `DPoP ${t}`,
    dpop: key.proof({ method: 'GET', url: `${R}${extra.path ?? '/socket.io/'}`, accessToken: t, ...(extra.nonce && { nonce: extra.nonce }) }),
  });

  it('H26 (b) socket.io extraHeaders Authorization: DPoP + a proof for GET <public origin>/socket.io/ → connects (websocket and polling); the same proof again → connect_error invalid_dpop_proof; no proof → invalid_dpop_proof', async () => {
    const api = await gatewayApp((app) => new IoAdapter(app), false);
    for (const transport of ['websocket', 'polling'] as const) {
      const t = token();
      const headers = ioProof(t);
      const opened = await ioConnect(api.port, headers, transport);
      expect(opened.connected).toBe(true);
      expect(await opened.ask!()).toEqual({ by: 'agent-n' }); // messages are judged with the agent of the handshake
      const replayed = await ioConnect(api.port, headers, transport);
      expect({ message: replayed.error?.message, data: replayed.error?.data }).toEqual({ message: 'invalid_dpop_proof', data: { error: 'invalid_dpop_proof', error_description: ERROR_DESCRIPTIONS.dpopProof } });
      const bare = await ioConnect(api.port, { authorization: `DPoP ${t}` }, transport);
      expect(bare.error?.data).toEqual({ error: 'invalid_dpop_proof', error_description: ERROR_DESCRIPTIONS.dpopProof });
      expectNoLeak([replayed.error?.data, bare.error?.data], [t, headers.dpop], api.logger.lines);
    }
  });

  it('C26 (socket.io) a DPoP-bound token as Bearer in extraHeaders → connect_error invalid_token "DPoP-bound token requires the DPoP authentication scheme" (the header could carry a proof)', async () => {
    const api = await gatewayApp((app) => new IoAdapter(app), false);
    const t = token();
    const refused = await ioConnect(api.port, { authorization: `Bearer ${t}` }, 'websocket');
    expect(refused.error?.data).toEqual({ error: 'invalid_token', error_description: ERROR_DESCRIPTIONS.dpopScheme });
    expectNoLeak(refused.error?.data, [t], api.logger.lines);
  });

  it('H19 (socket.io) extraHeaders with a proof without nonce → connect_error use_dpop_nonce whose data names a fresh nonce; the retry with it connects', async () => {
    const api = await gatewayApp((app) => new IoAdapter(app));
    const t = token();
    const refused = await ioConnect(api.port, ioProof(t), 'websocket');
    expect(refused.error?.data).toEqual({ error: 'use_dpop_nonce', error_description: ERROR_DESCRIPTIONS.dpopNonce, dpop_nonce: expect.any(String) });
    expect((await ioConnect(api.port, ioProof(t, { nonce: String(refused.error!.data!.dpop_nonce) }), 'websocket')).connected).toBe(true);
  });

  it('H19 (gRPC) a proof without nonce → UNAUTHENTICATED use_dpop_nonce, dpop-nonce in the trailers; H22 (gRPC) a nonce past half its lifetime → served, a new dpop-nonce in the initial metadata', async () => {
    const { app, logger } = await startApp({ controllers: [OrdersRpcController], extra: nonceOptions() }, zone);
    const hybrid = await listenHybrid(app, PROTO);
    apps.push(app);
    closers.push(() => hybrid.tcp.close());
    const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
    const client = new orders(hybrid.grpcUrl, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Find: Unary };
    closers.unshift(() => client.close());
    const find = (t: string, nonce?: string) => new Promise<{ error: grpc.ServiceError | null; initial?: grpc.Metadata }>((resolve) => {
      const metadata = new grpc.Metadata();
      metadata.add('authorization', `DPoP ${t}`);
      metadata.add('dpop', key.proof({ method: 'POST', url: `${R}/orders.Orders/Find`, accessToken: t, ...(nonce && { nonce }) }));
      let initial: grpc.Metadata | undefined;
      const call = (client.Find as unknown as (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall)({ id: 'o-1' }, metadata, (error) => resolve({ error, initial }));
      call.on('metadata', (m: grpc.Metadata) => (initial = m));
    });
    const t = token();
    const refused = await find(t);
    expect({ code: refused.error?.code, details: refused.error?.details }).toEqual({ code: grpc.status.UNAUTHENTICATED, details: ERROR_DESCRIPTIONS.dpopNonce });
    const nonce = refused.error!.metadata.get('dpop-nonce')[0];
    expect(nonce).toEqual(expect.any(String));
    expect(String(refused.error!.metadata.get('www-authenticate')[0])).toContain('DPoP error="use_dpop_nonce"');
    expect((await find(t, String(nonce))).error).toBeNull();
    const aging = await find(t, await nonceAged(31_000));
    expect(aging.error).toBeNull();
    expect(aging.initial?.get('dpop-nonce')[0]).toEqual(expect.any(String));
    expectNoLeak({ trailers: refused.error!.metadata.getMap(), initial: aging.initial?.getMap() }, [t], logger.lines);
  });
});

/**
 * `dpop: 'required'` (H24) on carriers whose token travels in a payload (an attack trial of DPoP:
 * an unbound Bearer token in socket.io `auth` or over TCP was admitted while HTTP, `ws` and gRPC
 * refused it): refused with the fixed description, as a bound token is there (Q39).
 */
describe('H24 dpop required: carriers where no proof can be checked', () => {
  let zone: TestZone;
  const closers: (() => unknown)[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    for (const close of closers) await close();
    await zone?.stop();
  });
  const required: Partial<KeycardModuleOptions> = { dpop: 'required' };

  it('H24 (socket.io) auth.token = an unbound token → connect_error invalid_token "DPoP-bound tokens need the DPoP scheme on an HTTP request"; extraHeaders Authorization: Bearer → connect_error, no error code', async () => {
    const { app, logger } = await startApp({ providers: [OrdersGateway], extra: required }, zone);
    app.useWebSocketAdapter(app.get(KeycardConnections).guard(new IoAdapter(app)));
    await app.listen(0, '127.0.0.1');
    closers.push(() => app.close());
    const port = (app.getHttpServer().address() as { port: number }).port;
    const token = zone.tokenFor({ scopes: ['orders:read'] });
    const refusal = (options: { auth?: object; extraHeaders?: Record<string, string> }) => {
      const socket = io(`http://127.0.0.1:${port}`, { ...options, transports: ['websocket'], reconnection: false, forceNew: true });
      return new Promise<Error & { data?: unknown }>((resolve, reject) => {
        socket.once('connect_error', resolve);
        socket.once('connect', () => reject(new Error('connected')));
      }).finally(() => socket.disconnect());
    };
    const inAuth = await refusal({ auth: { token } });
    expect(inAuth.data).toEqual({ error: 'invalid_token', error_description: ERROR_DESCRIPTIONS.dpopCarrier });
    const asBearer = await refusal({ extraHeaders: { authorization: `Bearer ${token}` } });
    expect(asBearer.data).toEqual({ error_description: 'Authentication is required' });
    expectNoLeak([inAuth.data, asBearer.data], [token], logger.lines);
  });

  it('H24 (TCP) rpcTokenExtractor with an unbound token → refused invalid_token "DPoP-bound tokens need the DPoP scheme on an HTTP request"', async () => {
    const { app, logger } = await startApp({
      controllers: [OrdersRpcController],
      extra: { ...required, rpcTokenExtractor: (context) => context.switchToRpc().getData<{ accessToken?: string }>()?.accessToken },
    }, zone);
    const hybrid = await listenHybrid(app, PROTO);
    closers.push(() => app.close(), () => hybrid.tcp.close());
    const token = zone.tokenFor({ scopes: ['orders:read'] });
    const error = await lastValueFrom(hybrid.tcp.send('orders.find', { id: 'o-9', accessToken: token })).then(() => undefined, (e: unknown) => e);
    expect(error).toMatchObject({ code: 16, error: 'invalid_token', error_description: ERROR_DESCRIPTIONS.dpopCarrier });
    expectNoLeak(error, [token], logger.lines);
  });
});
