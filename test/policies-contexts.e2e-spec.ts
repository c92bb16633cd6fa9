/**
 * §T policies on every other door, decided by the same core: GraphQL (Apollo on Express, Mercurius
 * on Fastify), socket.io and ws messages, gRPC unary calls and MCP `tools/call` (T7 the hierarchy,
 * T10 and T26 argument-dependent tool scopes in one challenge, T12 per-field GraphQL arguments,
 * T24 the RFC 9470 refusal in each door's own shape).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Args, Query, registerEnumType, Resolver } from '@nestjs/graphql';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { McpController, Tool } from '@rekog/mcp-nest';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Agent, KeycardConnections, KeycardModule, RequireAuthentication, RequireScopes, type AgentContext } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { R } from './support/forge.js';
import { askOverSocketIo, askOverWs } from './support/gateway-clients.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { parseChallenge, send } from './support/http.js';
import { ADAPTERS, CapturingLogger } from './support/keycard-app.js';
import { freePort } from './support/free-port.js';
import { startMcpApp, type RunningMcpApp } from './support/mcp-app.js';
import { listenHybrid } from './support/rpc-app.js';

const HIERARCHY = { 'orders:write': ['orders:read'], 'orders:admin': ['orders:write', { prefix: 'orders:' }] };
const ACR = ['urn:kc:mfa', 'urn:kc:phr'];
const STEP_UP = 'A stronger or more recent user authentication is required';
const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));

enum Visibility {
  PUBLIC = 'PUBLIC',
  PRIVATE = 'PRIVATE',
}
registerEnumType(Visibility, { name: 'Visibility' });

@Resolver()
class PolicyResolver {
  @RequireScopes('orders:read')
  @Query(() => String, { nullable: true })
  readOrders(@Agent('clientId') clientId: string): string {
    return `read by ${clientId}`;
  }

  @RequireScopes.fromArguments((args: { visibility: Visibility }) => (args.visibility === Visibility.PRIVATE ? ['repo:private'] : ['repo:read']))
  @Query(() => String, { nullable: true })
  repository(@Args('visibility', { type: () => Visibility }) visibility: Visibility): string {
    return `repo ${visibility}`;
  }

  @RequireAuthentication({ acr: ACR })
  @Query(() => String, { nullable: true })
  strong(): string {
    return 'strong';
  }
}

describe('§T policies on every door', () => {
  let zone: TestZone;
  const issued: string[] = [];
  const token = (claims: Record<string, unknown>) => {
    const t = zone.issueToken({ client_id: 'agent-t', ...claims });
    issued.push(t);
    return t;
  };
  const noTokenIn = (lines: readonly string[]) => {
    for (const t of issued) expect(lines.some((line) => line.includes(t.split('.')[2]!))).toBe(false);
  };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  describe.each(GRAPHQL_SERVERS)('GraphQL, %s', (_name, server) => {
    let api: Awaited<ReturnType<typeof startGraphQLApp>>;
    beforeAll(async () => {
      api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, scopeHierarchy: HIERARCHY }, { providers: [PolicyResolver] });
    });
    afterAll(async () => {
      noTokenIn(api?.logger.lines ?? []);
      await api?.close();
    });

    it('T7 orders:write serves a field that needs orders:read', async () => {
      const answer = await postGraphQL(api.url, '{ readOrders }', token({ scope: 'orders:write' }));
      expect({ status: answer.status, body: answer.body }).toEqual({ status: 200, body: { data: { readOrders: 'read by agent-t' } } });
    });

    it('T12 per-field arguments after coercion: the public field is served, the private one refused naming repo:private, one challenge, status 200', async () => {
      const t = token({ scope: 'repo:read' });
      for (const answer of [
        await postGraphQL(api.url, '{ pub: repository(visibility: PUBLIC) priv: repository(visibility: PRIVATE) }', t),
        await postVariables(api.url, 'query($p: Visibility!, $v: Visibility!) { pub: repository(visibility: $p) priv: repository(visibility: $v) }', { p: 'PUBLIC', v: 'PRIVATE' }, t),
      ]) {
        expect(answer.status).toBe(200);
        expect(answer.body.data).toEqual({ pub: 'repo PUBLIC', priv: null });
        expect(answer.body.errors).toHaveLength(1);
        expect(answer.body.errors![0]).toMatchObject({ path: ['priv'], extensions: { code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'repo:private' } });
        expect(answer.challenge?.params).toMatchObject({ error: 'insufficient_scope', scope: 'repo:private' });
      }
    });

    it('T24 GraphQL: UNAUTHENTICATED with error insufficient_user_authentication and acr_values; HTTP 401 and the challenge when nothing ran', async () => {
      const answer = await postGraphQL(api.url, '{ strong }', token({ acr: 'urn:kc:pwd' }));
      expect(answer.status).toBe(401);
      expect(answer.body.errors![0].extensions).toMatchObject({
        code: 'UNAUTHENTICATED', error: 'insufficient_user_authentication', error_description: STEP_UP, acr_values: ACR.join(' '),
      });
      expect(answer.body.errors![0].extensions).not.toHaveProperty('max_age');
      expect(answer.challenge?.params).toMatchObject({ error: 'insufficient_user_authentication', acr_values: ACR.join(' ') });
      const served = await postGraphQL(api.url, '{ strong }', token({ acr: 'urn:kc:mfa' }));
      expect(served.body).toEqual({ data: { strong: 'strong' } });
    });
  });

  @WebSocketGateway()
  class PolicyGateway {
    @RequireScopes('orders:read')
    @SubscribeMessage('read')
    read(@Agent() agent: AgentContext) {
      return { event: 'read', data: agent.clientId };
    }

    @RequireAuthentication({ acr: ACR })
    @SubscribeMessage('strong')
    strong() {
      return { event: 'strong', data: 'ok' };
    }
  }

  describe.each(['ws', 'socket.io'] as const)('%s messages', (platform) => {
    let app: INestApplication;
    let port: number;
    const logger = new CapturingLogger();
    const ask = platform === 'ws' ? askOverWs : askOverSocketIo;
    beforeAll(async () => {
      @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, scopeHierarchy: HIERARCHY })], providers: [PolicyGateway] })
      class GatewayModule {}
      app = await NestFactory.create(GatewayModule, { logger: false, abortOnError: false });
      app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
      await app.listen(0, '127.0.0.1');
      port = (app.getHttpServer().address() as { port: number }).port;
    });
    afterAll(async () => {
      noTokenIn(logger.lines);
      await app?.close();
    });

    it('T7 orders:write is served by a message handler that needs orders:read', async () => {
      expect(await ask(port, token({ scope: 'orders:write' }), 'read')).toEqual({ event: 'read', data: 'agent-t' });
    });

    it('T24 a weak sign-in gets an exception with error insufficient_user_authentication and acr_values', async () => {
      expect(await ask(port, token({ acr: 'urn:kc:pwd' }), 'strong')).toEqual({
        event: 'exception',
        data: expect.objectContaining({ error: 'insufficient_user_authentication', error_description: STEP_UP, acr_values: ACR.join(' ') }),
      });
      expect(await ask(port, token({ acr: 'urn:kc:phr' }), 'strong')).toEqual({ event: 'strong', data: 'ok' });
    });
  });

  @Controller()
  class PolicyRpcController {
    @RequireScopes('orders:read')
    @GrpcMethod('Orders', 'Find')
    find(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
      return { id: request.id, by: clientId };
    }

    @RequireAuthentication({ acr: ACR })
    @GrpcMethod('Orders', 'Place')
    place(@Payload() request: { id: string }) {
      return { id: request.id, by: 'placed' };
    }
  }

  describe('gRPC unary', () => {
    let app: INestApplication;
    let client: grpc.Client & Record<'Find' | 'Place', (request: object, metadata: grpc.Metadata, done: (error: grpc.ServiceError | null, reply?: unknown) => void) => void>;
    let close: () => Promise<void>;
    const logger = new CapturingLogger();
    const call = (method: 'Find' | 'Place', t: string) => {
      const metadata = new grpc.Metadata();
      metadata.add('authorization', `Bearer ${t}`);
      return new Promise<{ error: grpc.ServiceError | null; reply?: unknown }>((resolve) => client[method]({ id: 'o-1' }, metadata, (error, reply) => resolve({ error, reply })));
    };
    beforeAll(async () => {
      @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, scopeHierarchy: HIERARCHY })], controllers: [PolicyRpcController] })
      class RpcModule {}
      app = await NestFactory.create(RpcModule, { logger: false, abortOnError: false });
      const { grpcUrl, tcp } = await listenHybrid(app, PROTO);
      const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
      client = new orders(grpcUrl, grpc.credentials.createInsecure()) as never;
      close = async () => {
        client.close();
        await tcp.close();
        await app.close();
      };
    });
    afterAll(async () => {
      noTokenIn(logger.lines);
      await close?.();
    });

    it('T7 orders:write is served by a gRPC method that needs orders:read', async () => {
      expect(await call('Find', token({ scope: 'orders:write' }))).toEqual({ error: null, reply: { id: 'o-1', by: 'agent-t' } });
    });

    it('T24 a weak sign-in gets 16 UNAUTHENTICATED with fixed details', async () => {
      const { error } = await call('Place', token({ acr: 'urn:kc:pwd' }));
      expect({ code: error?.code, details: error?.details }).toEqual({ code: grpc.status.UNAUTHENTICATED, details: STEP_UP });
    });
  });

  describe.each(ADAPTERS)('MCP tools/call over %s', (adapter) => {
    let api: RunningMcpApp;
    let prm: string;
    const runs: string[] = [];

    @McpController()
    class RepoTools {
      @Tool({ name: 'get_repo', description: 'Reads a repository', parameters: z.object({ visibility: z.enum(['public', 'private']) }) })
      @RequireScopes.fromArguments((args: { visibility?: string }) => (args.visibility === 'private' ? ['repo:private'] : ['repo:read']))
      getRepo(args: { visibility: string }) {
        runs.push(`get_repo:${args.visibility}`);
        return { repo: args.visibility };
      }

      @Tool({ name: 'delete_repo', description: 'Deletes a repository', parameters: z.object({ visibility: z.enum(['public', 'private']) }) })
      @RequireScopes('admin')
      @RequireScopes.fromArguments((args: { visibility?: string }) => (args.visibility === 'private' ? ['repo:private'] : []))
      deleteRepo(args: { visibility: string }) {
        runs.push(`delete_repo:${args.visibility}`);
        return { deleted: args.visibility };
      }

      @Tool({ name: 'wire_money', description: 'High-impact' })
      @RequireAuthentication({ acr: ACR })
      wire() {
        runs.push('wire_money');
        return { wired: true };
      }

      @Tool({ name: 'read_orders', description: 'Needs orders:read' })
      @RequireScopes('orders:read')
      readOrders() {
        runs.push('read_orders');
        return { read: true };
      }
    }

    const callTool = (name: string, args: Record<string, unknown>, t: string) =>
      send(`${api.url}`, 'POST', '/mcp', [
        ['Content-Type', 'application/json'],
        ['Accept', 'application/json, text/event-stream'],
        ['MCP-Protocol-Version', '2025-06-18'],
        ['Authorization', `Bearer ${t}`],
      ], JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: args } }));

    beforeAll(async () => {
      const port = await freePort();
      api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port, tools: [RepoTools], keycard: { zoneUrl: zone.issuer, scopeHierarchy: HIERARCHY } });
      prm = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
    });
    afterAll(async () => {
      noTokenIn(api?.logger.lines ?? []);
      await api?.close();
    });

    const mcpToken = (scope: string, claims: Record<string, unknown> = {}) => token({ aud: `${api.url}/mcp`, scope, ...claims });

    it('T7 orders:write is served by a tool that needs orders:read', async () => {
      const res = await callTool('read_orders', {}, mcpToken('mcp:tools orders:write'));
      expect(res.status).toBe(200);
      expect(res.text).toContain('read');
      expect(runs).toContain('read_orders');
    });

    it('T10 get_repo: public served; private → HTTP 403 naming mcp:tools repo:private before the tool runs', async () => {
      runs.length = 0;
      const t = mcpToken('mcp:tools repo:read');
      const served = await callTool('get_repo', { visibility: 'public' }, t);
      expect(served.status).toBe(200);
      expect(runs).toEqual(['get_repo:public']);
      const refused = await callTool('get_repo', { visibility: 'private' }, t);
      expectOutcome(refused, '403:mcp:tools repo:private', prm, [t], api.logger.lines);
      expect(runs).toEqual(['get_repo:public']);
    });

    it('T26 endpoint mcp:tools, tool admin and an argument-derived repo:private: one 403 naming all three, endpoint first, no duplicates', async () => {
      runs.length = 0;
      const t = mcpToken('mcp:tools');
      expectOutcome(await callTool('delete_repo', { visibility: 'private' }, t), '403:mcp:tools admin repo:private', prm, [t], api.logger.lines);
      expect(runs).toEqual([]);
      const served = await callTool('delete_repo', { visibility: 'private' }, mcpToken('mcp:tools admin repo:private'));
      expect(served.status).toBe(200);
      expect(runs).toEqual(['delete_repo:private']);
    });

    it('T24 MCP tools/call: HTTP 401 insufficient_user_authentication with acr_values before the tool runs', async () => {
      runs.length = 0;
      const res = await callTool('wire_money', {}, mcpToken('mcp:tools', { acr: 'urn:kc:pwd' }));
      expect(res.status).toBe(401);
      const challenge = parseChallenge(res.headers['www-authenticate'])!;
      expect(challenge.params).toEqual({
        error: 'insufficient_user_authentication', error_description: STEP_UP, acr_values: ACR.join(' '), scope: 'mcp:tools', resource_metadata: prm,
      });
      expect(runs).toEqual([]);
      const served = await callTool('wire_money', {}, mcpToken('mcp:tools', { acr: 'urn:kc:mfa' }));
      expect(served.status).toBe(200);
      expect(runs).toEqual(['wire_money']);
    });
  });
});

/** A GraphQL operation with variables, posted as JSON. */
async function postVariables(url: string, query: string, variables: Record<string, unknown>, token: string) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  return { status: res.status, challenge: parseChallenge(res.headers.get('www-authenticate') ?? undefined), body: JSON.parse(text) as Awaited<ReturnType<typeof postGraphQL>>['body'] };
}
