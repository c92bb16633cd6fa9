/**
 * Microservice handlers behind the Keycard guard (catalogue §N7, N8, N10): a hybrid app whose gRPC
 * and TCP microservices are connected with `inheritAppConfig: true`, called with an in-process
 * `@grpc/grpc-js` client and Nest's TCP client over loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  GrpcMethod, GrpcStreamCall, GrpcStreamMethod, MessagePattern, Payload, type ClientProxy,
} from '@nestjs/microservices';
import { lastValueFrom, map, type Observable } from 'rxjs';
import { fileURLToPath } from 'node:url';
import { Agent, KeycardModule, Public, RequireScopes, type KeycardModuleOptions } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { listenHybrid, watchOnce } from './support/rpc-app.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));

@Controller()
class OrdersRpcController {
  @RequireScopes('orders:read')
  @GrpcMethod('Orders', 'Find')
  find(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
    return { id: request.id, by: clientId };
  }

  @RequireScopes('orders:write')
  @GrpcMethod('Orders', 'Place')
  place(@Payload() request: { id: string }) {
    return { id: request.id, by: 'placed' };
  }

  @Public()
  @GrpcMethod('Orders', 'Health')
  health() {
    return { id: 'health', by: 'ok' };
  }

  /** A duplex stream handled on the raw call (`@GrpcStreamCall`): Nest hands it `(call)`, no metadata argument. */
  @RequireScopes('orders:read')
  @GrpcStreamCall('Orders', 'Watch')
  watch(call: grpc.ServerDuplexStream<{ id: string }, { id: string; by: string }>) {
    call.on('data', (request: { id: string }) => call.write({ id: request.id, by: 'stream' }));
    call.on('end', () => call.end());
  }

  /** A client stream on the raw call, answered once through the reply callback (`@GrpcStreamCall`). */
  @RequireScopes('orders:read')
  @GrpcStreamCall('Orders', 'Collect')
  collect(call: grpc.ServerReadableStream<{ id: string }, { id: string; by: string }>, callback: grpc.sendUnaryData<{ id: string; by: string }>) {
    const ids: string[] = [];
    call.on('data', (request: { id: string }) => ids.push(request.id));
    call.on('end', () => callback(null, { id: ids.join(','), by: 'collect' }));
  }

  /** The same duplex stream as an Observable (`@GrpcStreamMethod`). */
  @RequireScopes('orders:read')
  @GrpcStreamMethod('Orders', 'Follow')
  follow(requests: Observable<{ id: string }>) {
    return requests.pipe(map((request) => ({ id: request.id, by: 'follow' })));
  }

  @MessagePattern('orders.find')
  findOverTcp(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
    return { id: request.id, by: clientId };
  }

  @RequireScopes('orders:write')
  @MessagePattern('orders.place')
  placeOverTcp(@Payload() request: { id: string }) {
    return { id: request.id, by: 'placed' };
  }

  @Public()
  @MessagePattern('orders.health')
  healthOverTcp() {
    return 'ok';
  }
}

interface RpcApp {
  app: INestApplication;
  grpcUrl: string;
  tcp: ClientProxy;
  logger: CapturingLogger;
  close(): Promise<void>;
}

async function startRpcApp(zone: TestZone, extra: Partial<KeycardModuleOptions> = {}): Promise<RpcApp> {
  const logger = new CapturingLogger();
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true, ...extra })],
    controllers: [OrdersRpcController],
  })
  class RpcAppModule {}
  const app = await NestFactory.create(RpcAppModule, { logger: false, abortOnError: false });
  const { grpcUrl, tcp } = await listenHybrid(app, PROTO);
  return {
    app,
    grpcUrl,
    tcp,
    logger,
    close: async () => {
      await tcp.close();
      await app.close();
    },
  };
}

type Unary = (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, reply?: unknown) => void) => void;

function grpcClient(url: string): grpc.Client & Record<'Find' | 'Place' | 'Health', Unary> {
  const definition = protoLoader.loadSync(PROTO);
  const orders = (grpc.loadPackageDefinition(definition).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
  return new orders(url, grpc.credentials.createInsecure()) as never;
}

function call(client: ReturnType<typeof grpcClient>, method: 'Find' | 'Place' | 'Health', token?: string) {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.add('authorization', `Bearer ${token}`);
  return new Promise<{ error: grpc.ServiceError | null; reply?: unknown }>((resolve) =>
    client[method]({ id: 'o-1' }, metadata, (error, reply) => resolve({ error, reply })),
  );
}

/** Calls the client-streaming `Collect` (deadline 5 s: a call never ended fails rather than hangs), writes `c-1` and ends. */
function collectOnce(client: ReturnType<typeof grpcClient>, token?: string) {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.add('authorization', `Bearer ${token}`);
  type Collect = (metadata: grpc.Metadata, options: object, callback: (error: grpc.ServiceError | null, reply?: unknown) => void) => grpc.ClientWritableStream<object>;
  return new Promise<{ error: grpc.ServiceError | null; reply?: unknown }>((resolve) => {
    const stream = (client as unknown as { Collect: Collect }).Collect(metadata, { deadline: Date.now() + 5000 }, (error, reply) => resolve({ error, reply }));
    stream.write({ id: 'c-1' });
    stream.end();
  });
}

describe('microservices: gRPC and TCP with inheritAppConfig: true', () => {
  let zone: TestZone;
  let api: RpcApp;
  let client: ReturnType<typeof grpcClient>;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startRpcApp(zone);
    client = grpcClient(api.grpcUrl);
  });
  afterAll(async () => {
    client?.close();
    await api?.close();
    await zone?.stop();
  });

  function expectGrpcRefusal(error: grpc.ServiceError | null, code: grpc.status, secrets: string[]) {
    expect(error).not.toBeNull();
    expect({ code: error!.code, details: error!.details }).toEqual({ code, details: expect.any(String) });
    expectFixedDescription(error!.details);
    expectNoLeak({ details: error!.details, metadata: error!.metadata.getMap() }, secrets, api.logger.lines);
  }

  it('N7 gRPC without a token → UNAUTHENTICATED', async () => {
    const { error } = await call(client, 'Find');
    expectGrpcRefusal(error, grpc.status.UNAUTHENTICATED, []);
  });

  it('N7 gRPC with a forged token → UNAUTHENTICATED, nothing leaked', async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const { error } = await call(client, 'Find', token);
    expectGrpcRefusal(error, grpc.status.UNAUTHENTICATED, [token]);
  });

  it('N7 gRPC with a valid token (authorization metadata) → served, @Agent() in the handler', async () => {
    const { error, reply } = await call(client, 'Find', zone.issueToken({ client_id: 'agent-grpc', scope: 'orders:read' }));
    expect(error).toBeNull();
    expect(reply).toEqual({ id: 'o-1', by: 'agent-grpc' });
  });

  it('N7 gRPC valid token without the scope → PERMISSION_DENIED naming the scope in the log', async () => {
    const token = zone.issueToken({ client_id: 'agent-low', scope: 'orders:read' });
    const { error } = await call(client, 'Place', token);
    expectGrpcRefusal(error, grpc.status.PERMISSION_DENIED, [token]);
    expect(api.logger.lines.some((l) => l.startsWith('denied rpc OrdersRpcController.place status=403 reason=insufficient_scope agent=agent-low'))).toBe(true);
  });

  it('N7 gRPC duplex stream (@GrpcStreamCall): a valid token in the metadata is read from the call → served (was: refused as if no token)', async () => {
    const served = await watchOnce(client, [['authorization', `Bearer ${zone.issueToken({ scope: 'orders:read' })}`]]);
    expect({ code: served.error?.code, details: served.error?.details }).toEqual({ code: undefined, details: undefined });
    expect(served.replies).toEqual([{ id: 'w-1', by: 'stream' }]);
    const followed = await watchOnce(client, [['authorization', `Bearer ${zone.issueToken({ scope: 'orders:read' })}`]], 'Follow');
    expect({ code: followed.error?.code, replies: followed.replies }).toEqual({ code: undefined, replies: [{ id: 'w-1', by: 'follow' }] });
  });

  it('N7 gRPC streams (duplex @GrpcStreamCall and @GrpcStreamMethod, client-streaming @GrpcStreamCall) refused (no token, forged, lacking the scope) → status 16/7 with the challenge trailer, no unhandled rejection (was: the client waited for its deadline)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const forgedToken = forged(zone.issueToken({ scope: 'orders:read' }));
      const lacking = zone.issueToken({ client_id: 'agent-stream-low', scope: 'orders:write' });
      const cases = [
        { token: undefined, code: grpc.status.UNAUTHENTICATED, challenge: /^Bearer .*scope="orders:read"/ },
        { token: forgedToken, code: grpc.status.UNAUTHENTICATED, challenge: /^Bearer .*error="invalid_token"/ },
        { token: lacking, code: grpc.status.PERMISSION_DENIED, challenge: /^Bearer .*error="insufficient_scope".*scope="orders:read"/ },
      ];
      for (const method of ['Watch', 'Follow'] as const) {
        for (const { token, code, challenge } of cases) {
          const outcome = await watchOnce(client, token === undefined ? [] : [['authorization', `Bearer ${token}`]], method);
          expect({ method, code: outcome.error?.code, replies: outcome.replies }).toEqual({ method, code, replies: [] });
          expectGrpcRefusal(outcome.error!, code, [forgedToken, lacking]);
          expect(outcome.error!.metadata.get('www-authenticate')).toEqual([expect.stringMatching(challenge)]);
        }
      }
      for (const { token, code, challenge } of cases) {
        const outcome = await collectOnce(client, token);
        expect({ code: outcome.error?.code, reply: outcome.reply }).toEqual({ code, reply: undefined });
        expectGrpcRefusal(outcome.error, code, [forgedToken, lacking]);
        expect(outcome.error!.metadata.get('www-authenticate')).toEqual([expect.stringMatching(challenge)]);
      }
      expect(await collectOnce(client, zone.issueToken({ scope: 'orders:read' }))).toEqual({ error: null, reply: { id: 'c-1', by: 'collect' } });
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('N8 @Public() gRPC method without a token → served', async () => {
    const { error, reply } = await call(client, 'Health');
    expect(error).toBeNull();
    expect(reply).toEqual({ id: 'health', by: 'ok' });
  });

  it('N7 TCP (no metadata) without a token extractor → refused, even with a token in the payload', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    const error = await lastValueFrom(api.tcp.send('orders.find', { id: 'o-1', accessToken: token })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 16, error_description: 'Authentication is required' });
    expectNoLeak(error, [token], api.logger.lines);
  });

  it('N8 @Public() TCP handler → served', async () => {
    expect(await lastValueFrom(api.tcp.send('orders.health', {}))).toBe('ok');
  });

  it('N10 microservice refusals are audited with the handler, never with the token', async () => {
    const token = zone.issueToken({ client_id: 'agent-rpc-audit', scope: 'orders:read' });
    await call(client, 'Place', token);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const audit = api.logger.lines.filter((l) => l.includes('"agent":"agent-rpc-audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit).toEqual([expect.objectContaining({ method: 'RPC', route: 'OrdersRpcController.place', status: 403, reason: 'insufficient_scope' })]);
  });
});

describe('microservices: TCP with an app-supplied rpcTokenExtractor', () => {
  let zone: TestZone;
  let api: RpcApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startRpcApp(zone, {
      rpcTokenExtractor: (context) => context.switchToRpc().getData<{ accessToken?: string }>()?.accessToken,
    });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('N7 TCP with the token where the extractor reads it → served', async () => {
    const token = zone.issueToken({ client_id: 'agent-tcp', scope: 'orders:read' });
    expect(await lastValueFrom(api.tcp.send('orders.find', { id: 'o-2', accessToken: token }))).toEqual({ id: 'o-2', by: 'agent-tcp' });
  });

  it('N7 TCP with a forged token → refused invalid_token, nothing leaked', async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const error = await lastValueFrom(api.tcp.send('orders.find', { id: 'o-3', accessToken: token })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 16, error: 'invalid_token' });
    expect(error).not.toHaveProperty('scope'); // orders.find requires no scope (Q12)
    expectNoLeak(error, [token], api.logger.lines);
  });

  it('N7 (Q12) TCP, a scoped handler refused 401 (forged token, no token) → the error names the handler\'s scope', async () => {
    const token = forged(zone.issueToken({ scope: 'orders:write' }));
    for (const accessToken of [token, undefined]) {
      const error = await lastValueFrom(api.tcp.send('orders.place', { id: 'o-4', accessToken })).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: 16, error_description: expect.any(String), scope: 'orders:write' });
      expect((error as { error?: string }).error).toBe(accessToken === undefined ? undefined : 'invalid_token');
      expectNoLeak(error, [token], api.logger.lines);
    }
  });
});
