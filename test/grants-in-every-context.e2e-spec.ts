/**
 * `@Grant()` in every context (catalogue O18): a graphql-ws query and subscription (Apollo), a
 * Mercurius subscription, socket.io and `ws` message handlers, a gRPC `@GrpcMethod` and an mcp-nest
 * tool, each reached with a token of the second of two trusted zones. Each handler receives an
 * access context after exactly one exchange at that zone, whose subject token is the one the carrier
 * was verified with. A message handler asking `ClientCredentialsService` for a token without a zone
 * gets it from its connection's zone (O17 outside HTTP). Real clients (graphql-ws, socket.io-client,
 * ws, @grpc/grpc-js, the MCP SDK client) and real TestZones over loopback.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, type INestApplication } from '@nestjs/common';
import { Query, Resolver, Subscription } from '@nestjs/graphql';
import { GrpcMethod, Payload, Transport } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { McpController, Tool } from '@rekog/mcp-nest';
import { fileURLToPath } from 'node:url';
import { Access, type AccessContext, ClientCredentialsService, Grant, KeycardConnections, type KeycardModuleOptions } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { baseClaims, R } from './support/forge.js';
import { freePort } from './support/free-port.js';
import { askOverSocketIo, askOverWs } from './support/gateway-clients.js';
import { firstGraphQLWsResult, startGraphQLApp, type GraphQLServer } from './support/graphql-app.js';
import { startApp, type RunningApp } from './support/keycard-app.js';
import { callToolWithToken, startMcpApp, toolJson } from './support/mcp-app.js';
import { findOrder } from './support/rpc-app.js';

const UP1 = 'https://upstream.example.com';
const UP2 = 'https://second-upstream.example.com';
const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));

/** What a handler's access context says: its status and, per resource, the scope granted or the reason. */
function describeAccess(access: AccessContext): string {
  const resources = access.resources.map((resource) => `${resource}=${access.has(resource) ? access.access(resource).scope : access.errors[resource].reason}`);
  return `${access.status} ${resources.join(' ')}`;
}

/** A granted upstream token, as every handler below reports it. */
const GRANTED = `success ${UP1}=up:read`;

@Resolver()
class GrantedResolver {
  @Grant(UP1, 'up:read')
  @Query(() => String)
  upstream(@Access() access: AccessContext): string {
    return describeAccess(access);
  }

  @Grant(UP1, 'up:read')
  @Subscription(() => String)
  upstreamEvents(@Access() access: AccessContext): AsyncGenerator<{ upstreamEvents: string }> {
    return (async function* () {
      yield { upstreamEvents: describeAccess(access) };
    })();
  }
}

@WebSocketGateway()
class GrantedGateway {
  constructor(private readonly asService: ClientCredentialsService) {}

  /** A grant that names no zone (O17, Q22): the zone of the connection's token. */
  @SubscribeMessage('as-service')
  async token() {
    return { event: 'as-service', data: (await this.asService.token({ resource: UP1 })).accessToken };
  }

  @Grant(UP1, 'up:read')
  @SubscribeMessage('upstream')
  upstream(@Access() access: AccessContext) {
    return { event: 'upstream', data: describeAccess(access) };
  }
}

/** A grant on the class and one on the handler: both apply their interceptor, which runs once. */
@Grant(UP2, 'up2:read')
@WebSocketGateway()
class ClassGrantedGateway {
  @Grant(UP1, 'up:read')
  @SubscribeMessage('both')
  both(@Access() access: AccessContext) {
    return { event: 'both', data: describeAccess(access) };
  }
}

@Controller()
class GrantedRpcController {
  @Grant(UP1, 'up:read')
  @GrpcMethod('Orders', 'Find')
  find(@Payload() request: { id: string }, @Access() access: AccessContext) {
    return { id: request.id, by: describeAccess(access) };
  }
}

@McpController()
class GrantedTools {
  @Tool({ name: 'upstream', description: 'What the grant obtained' })
  @Grant(UP1, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { access: describeAccess(access) };
  }
}

describe('O18 @Grant() in every context, authenticated with a token of the second zone', () => {
  let z1: TestZone;
  let z2: TestZone;
  let zones: Pick<KeycardModuleOptions, 'zones'>;
  const running: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    const start = (n: number) =>
      TestZone.start({ audience: R, clients: [{ clientId: `svc-${n}`, clientSecret: `secret-${n}` }], resources: { [UP1]: ['up:read'], [UP2]: ['up2:read'] } });
    [z1, z2] = await Promise.all([start(1), start(2)]);
    zones = {
      zones: [1, 2].map((n) => ({ zoneUrl: [z1, z2][n - 1].issuer, clientCredentials: { clientId: `svc-${n}`, clientSecret: `secret-${n}` } })),
    };
  });
  beforeEach(() => {
    z1.reset();
    z2.reset();
  });
  afterAll(async () => {
    for (const app of running.splice(0)) await app.close();
    await Promise.all([z1, z2].map((zone) => zone?.stop()));
  });

  /** A Z2 token for the resource `aud` (each case its own, so no exchange is served from the cache). */
  const z2Token = (claims: Record<string, unknown> = {}) => z2.issueToken(baseClaims(z2, { client_id: 'agent-2', sub: 'user-2', ...claims }));

  /** O18's outcome: the access context is `success` after exactly 1 exchange at Z2 of `token`, none at Z1, nothing leaked. */
  function expectGranted(answer: unknown, token: string, logs: readonly string[]): void {
    expect(answer).toBe(GRANTED);
    expect([z1.counts.token, z2.counts.token]).toEqual([0, 1]);
    expect(z2.tokenRequests[0].form).toMatchObject({ subject_token: token, resource: UP1, scope: 'up:read' });
    expectNoLeak(String(answer), [token], logs);
  }

  describe.each<[string, GraphQLServer]>([['Apollo', 'apollo'], ['Mercurius', 'mercurius']])('graphql-ws (%s)', (name, server) => {
    let api: Awaited<ReturnType<typeof startGraphQLApp>>;
    beforeAll(async () => {
      api = await startGraphQLApp(server, { ...zones, resource: R }, {
        providers: [GrantedResolver],
        ...(server === 'mercurius' ? { mercuriusSubscription: [] } : {}),
      });
      running.push(api);
    });

    if (server === 'apollo') {
      it('O18 a graphql-ws query: access context success after 1 exchange at Z2 of the connection\'s token', async () => {
        const token = z2Token();
        const result = await firstGraphQLWsResult(api.wsUrl, { authorization: `Bearer ${token}` }, '{ upstream }');
        expect(result.errors).toBeUndefined();
        expectGranted(result.data?.upstream, token, api.logger.lines);
      });
    }

    it(`O18 the ${name} subscription: access context success after 1 exchange at Z2 of the connection's token`, async () => {
      const token = z2Token();
      const result = await firstGraphQLWsResult(api.wsUrl, { token }, 'subscription { upstreamEvents }');
      expect(result.errors).toBeUndefined();
      expectGranted(result.data?.upstreamEvents, token, api.logger.lines);
    });
  });

  describe.each<[string, typeof askOverWs]>([['socket.io', askOverSocketIo], ['ws', askOverWs]])('a %s message handler', (platform, ask) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp('express', { ...zones, resource: R }, {
        controllers: [],
        providers: [GrantedGateway, ClassGrantedGateway],
        configure: (app: INestApplication) =>
          app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app))),
      });
      running.push(api);
    });

    it(`O18 ${platform}: access context success after 1 exchange at Z2 of the handshake's token; another connection gets its own`, async () => {
      const port = Number(new URL(api.url).port);
      const token = z2Token();
      const answer = await ask(port, token, 'upstream');
      expect(answer.event).toBe('upstream');
      expectGranted(answer.data, token, api.logger.lines);
      // A second connection with another token: its own access context, from its own token.
      const other = z2Token({ sub: 'user-3' });
      expect((await ask(port, other, 'upstream')).data).toBe(GRANTED);
      expect(z2.tokenRequests.map((request) => request.form.subject_token)).toEqual([token, other]);
    });

    it(`O17 (a) ${platform}: ClientCredentialsService without zone in a message handler of a Z2 connection → AS#1 at Z2, AS#0 at Z1`, async () => {
      const answer = await ask(Number(new URL(api.url).port), z2Token(), 'as-service');
      expect(answer.event).toBe('as-service');
      expect(z2.verifyOwnToken(answer.data as string)).toMatchObject({ sub: 'svc-2' });
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 1]);
      expect(z2.tokenRequests[0].form).toEqual({ grant_type: 'client_credentials', resource: UP1 });
    });

    it(`O18 ${platform}: a grant on the gateway and one on the handler merge; one exchange per resource, each with the handshake's token`, async () => {
      const token = z2Token();
      const answer = await ask(Number(new URL(api.url).port), token, 'both');
      expect(answer).toEqual({ event: 'both', data: `success ${UP1}=up:read ${UP2}=up2:read` });
      expect([z1.counts.token, z2.counts.token]).toEqual([0, 2]);
      expect(z2.tokenRequests.map((request) => [request.form.resource, request.form.subject_token]).sort()).toEqual([[UP2, token], [UP1, token]].sort());
    });
  });

  describe('a gRPC @GrpcMethod', () => {
    let api: RunningApp;
    let grpcUrl: string;
    beforeAll(async () => {
      grpcUrl = `127.0.0.1:${await freePort()}`;
      api = await startApp('express', { ...zones, resource: R }, {
        controllers: [GrantedRpcController],
        configure: (app: INestApplication) =>
          app.connectMicroservice({ transport: Transport.GRPC, options: { package: 'orders', protoPath: PROTO, url: grpcUrl } }, { inheritAppConfig: true }),
      });
      await api.app.startAllMicroservices();
      running.push(api);
    });

    it('O18 gRPC: access context success after 1 exchange at Z2 of the call\'s authorization metadata', async () => {
      const token = z2Token();
      const { error, reply } = await findOrder(grpcUrl, token);
      expect(error).toBeNull();
      expectGranted(reply?.by, token, api.logger.lines);
    });
  });

  describe('an mcp-nest tool', () => {
    let api: Awaited<ReturnType<typeof startMcpApp>>;
    let resource: string;
    beforeAll(async () => {
      const port = await freePort();
      resource = `http://127.0.0.1:${port}/mcp`;
      api = await startMcpApp({ adapter: 'express', zoneUrl: '', port, keycard: zones, tools: [GrantedTools] });
      running.push(api);
    });

    it('O18 MCP: access context success after 1 exchange at Z2 of the MCP request\'s token', async () => {
      const token = z2Token({ aud: resource, scope: 'mcp:tools' });
      const result = toolJson(await callToolWithToken(`${api.url}/mcp`, token, 'upstream'));
      expectGranted((result as { access?: string }).access, token, api.logger.lines);
    });
  });
});
