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
import { Agent, DpopKey, KeycardConnections, KeycardModule, RequireScopes, type KeycardModuleOptions } from '../lib/index.js';
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
