/**
 * An attack trial of the policies on the doors that are not single HTTP requests: ws and socket.io
 * messages, gRPC unary calls and streams. A hostile client controls every payload, and tries to
 * get a handler served with less than it declares, a 500, a leak or a hang.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, GrpcStreamCall, GrpcStreamMethod, Payload } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { fileURLToPath } from 'node:url';
import { map, of, type Observable } from 'rxjs';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import {
  Agent, KeycardConnections, KeycardModule, OptionalAuth, RequireActors, RequireAuthentication, RequireClaims, RequireScopes, type AgentContext,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak, forged, issuedTokens } from './support/contexts.js';
import { R, actChain } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { listenHybrid } from './support/rpc-app.js';

const HIERARCHY = { 'orders:write': ['orders:read'], 'orders:admin': ['orders:write', { prefix: 'orders:' }] };
const ACR = ['urn:kc:mfa', 'urn:kc:phr'];
const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));

/** The docs' allow-list, written as an app would, without guarding against a missing payload. */
const byVisibility = (args: { visibility?: unknown }) => (args.visibility === 'public' ? ['repo:read'] : ['repo:private']);

@WebSocketGateway()
class DoorGateway {
  @RequireScopes.fromArguments(byVisibility)
  @SubscribeMessage('repo')
  repo(@MessageBody() body: unknown) { return { event: 'repo', data: body }; }

  @RequireScopes.anyOf(['orders:read', 'orders:write'], ['orders:admin'])
  @SubscribeMessage('any')
  any() { return { event: 'any', data: 'ok' }; }

  @RequireClaims({ roles: { includes: 'admin' } })
  @SubscribeMessage('role')
  role() { return { event: 'role', data: 'ok' }; }

  @RequireAuthentication({ acr: ACR, maxAge: 300 })
  @RequireScopes('orders:write')
  @SubscribeMessage('strong')
  strong() { return { event: 'strong', data: 'ok' }; }

  @RequireActors({ maxDepth: 1, allowed: ['agent-b'] })
  @SubscribeMessage('chain')
  chain() { return { event: 'chain', data: 'ok' }; }

  @OptionalAuth()
  @SubscribeMessage('greet')
  greet(@Agent() agent?: AgentContext) { return { event: 'greet', data: agent?.clientId ?? null }; }
}

interface Answer { event: string; data: unknown }

/** Opens a connection (`auth` as given), sends `event` with `data` (raw: `undefined` sends none) and resolves with the first event back. */
function askWs(port: number, headers: Record<string, string>, event: string, data?: unknown): Promise<Answer> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers });
  return new Promise<Answer>((resolve, reject) => {
    socket.once('message', (raw) => resolve(JSON.parse(String(raw)) as Answer));
    socket.once('open', () => socket.send(JSON.stringify(data === undefined ? { event } : { event, data })));
    socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused ${res.statusCode} ${res.headers['www-authenticate']}`)));
    socket.once('error', reject);
    socket.once('close', (code) => reject(new Error(`ws closed (${code}) before an answer`)));
  }).finally(() => socket.terminate());
}

function askIo(port: number, auth: Record<string, unknown>, event: string, ...data: unknown[]): Promise<Answer> {
  const socket = io(`http://127.0.0.1:${port}`, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise<Answer>((resolve, reject) => {
    socket.onAny((name: string, payload: unknown) => resolve({ event: name, data: payload }));
    socket.once('connect', () => socket.emit(event, ...data));
    socket.once('connect_error', (error) => reject(new Error(`connect_error ${error.message} ${JSON.stringify((error as { data?: unknown }).data)}`)));
    socket.once('disconnect', (reason) => reject(new Error(`socket.io disconnected (${reason}) before an answer`)));
  }).finally(() => socket.disconnect());
}

describe('policies on the message and RPC doors (an attack trial)', () => {
  let zone: TestZone;
  const { token, signatures } = issuedTokens(() => zone);

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  describe.each(['ws', 'socket.io'] as const)('%s messages', (platform) => {
    let app: INestApplication;
    let port: number;
    const logger = new CapturingLogger();
    const ask = (t: string | undefined, event: string, ...data: unknown[]) => (platform === 'ws'
      ? askWs(port, t === undefined ? {} : { authorization: `Bearer ${t}` }, event, data[0])
      : askIo(port, t === undefined ? {} : { token: t }, event, ...data));
    beforeAll(async () => {
      @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, scopeHierarchy: HIERARCHY })], providers: [DoorGateway] })
      class GatewayModule {}
      app = await NestFactory.create(GatewayModule, { logger: false, abortOnError: false });
      const adapter = platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app);
      app.useWebSocketAdapter(app.get(KeycardConnections).guard(adapter, { allowAnonymous: true }));
      await app.listen(0, '127.0.0.1');
      port = (app.getHttpServer().address() as { port: number }).port;
    });
    afterAll(async () => {
      await app?.close();
    });

    const refusal = (fields: Record<string, string>) => ({ event: 'exception', data: { status: 'error', ...fields } });
    const lacksScope = (scope: string) => refusal({ error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope });
    const lacksPermission = refusal({ error: 'insufficient_scope', error_description: 'The access token lacks a required permission' });
    afterAll(() => {
      expectNoLeak(logger.lines, signatures(), logger.lines);
    });

    it('T10 argument-dependent scopes on a message: the allow-list judges the payload as sent; an array, a string, a second argument never get the lesser scope', async () => {
      const read = token({ scope: 'repo:read' });
      expect(await ask(read, 'repo', { visibility: 'public' })).toEqual({ event: 'repo', data: { visibility: 'public' } });
      for (const payload of [{ visibility: 'private' }, { visibility: ['public'] }, 'public', 42]) {
        expect(await ask(read, 'repo', payload)).toEqual(lacksScope('repo:private'));
      }
      if (platform === 'socket.io') expect(await ask(read, 'repo', { visibility: 'private' }, { visibility: 'public' })).toEqual(lacksScope('repo:private'));
    });

    it('T13 a message without a payload, or with null, is no policy bug: the function sees {} (403 naming repo:private), never a 500 and an error line per message', async () => {
      const read = token({ scope: 'repo:read' });
      const before = logger.lines.length;
      expect(await ask(read, 'repo')).toEqual(lacksScope('repo:private'));
      expect(await ask(read, 'repo', null)).toEqual(lacksScope('repo:private'));
      expect(logger.lines.slice(before).filter((line) => line.includes('argument-dependent'))).toEqual([]);
    });

    it('T1 T8 hierarchy and anyOf on a message: orders:admin serves; orders:read or profile get the first path named', async () => {
      expect(await ask(token({ scope: 'orders:admin' }), 'any')).toEqual({ event: 'any', data: 'ok' });
      expect(await ask(token({ scope: 'orders:read' }), 'any')).toEqual(lacksScope('orders:read orders:write'));
      expect(await ask(token({ scope: 'profile' }), 'any')).toEqual(lacksScope('orders:read orders:write'));
    });

    it('T18 T29 claims and the act chain on a message: refused without scope, a __proto__ key or a deeper chain never pass', async () => {
      expect(await ask(token({ roles: ['user'] }), 'role')).toEqual(lacksPermission);
      expect(await ask(token(JSON.parse('{"__proto__":{"roles":["admin"]}}') as Record<string, unknown>), 'role')).toEqual(lacksPermission);
      expect(await ask(token({ act: { sub: 'agent-z' } }), 'chain')).toEqual(lacksPermission);
      expect(await ask(token({ act: { sub: 'agent-b', act: { sub: 'agent-c' } } }), 'chain')).toEqual(lacksPermission);
      expect(await ask(token({ act: { sub: 'agent-b' } }), 'chain')).toEqual({ event: 'chain', data: 'ok' });
    });

    it('T29 an act chain the agent could not show whole (a link that is no JSON object, a sub that is no string, deeper than 32) is refused at the handshake as invalid_token, never opened with a shorter chain', async () => {
      const refused = platform === 'ws'
        ? /^upgrade refused 401 Bearer error="invalid_token", error_description="The access token claims are invalid", resource_metadata="[^"]+"$/
        : /^connect_error invalid_token \{"error":"invalid_token","error_description":"The access token claims are invalid"/;
      for (const act of ['agent-b', { sub: 'agent-b', act: null }, { sub: 42 }, actChain(33)]) {
        await expect(ask(token({ act }), 'chain')).rejects.toThrow(refused);
      }
      expect(await ask(token({ act: { sub: 'agent-b' } }), 'chain')).toEqual({ event: 'chain', data: 'ok' });
    });

    it('T22 T24 step-up on a message: one exception with acr_values, max_age and scope; a non-string acr is invalid_token', async () => {
      const now = Math.floor(Date.now() / 1000);
      expect(await ask(token({ acr: 'urn:kc:pwd', auth_time: now - 900, scope: 'orders:read' }), 'strong')).toEqual(refusal({
        error: 'insufficient_user_authentication', error_description: 'A stronger or more recent user authentication is required',
        acr_values: ACR.join(' '), max_age: '300', scope: 'orders:write',
      }));
      expect(await ask(token({ acr: 42, scope: 'orders:write' }), 'strong')).toEqual(refusal({
        error: 'invalid_token', error_description: 'The access token claims are invalid', scope: 'orders:write',
      }));
      expect(await ask(token({ acr: 'urn:kc:mfa', auth_time: now, scope: 'orders:write' }), 'strong')).toEqual({ event: 'strong', data: 'ok' });
    });

    it('T14 @OptionalAuth() on a message: a valid handshake token is served with its agent; a forged one is refused at the handshake', async () => {
      expect(await ask(token({}), 'greet')).toEqual({ event: 'greet', data: 'agent-t' });
      await expect(ask(forged(token({})), 'greet')).rejects.toThrow(platform === 'ws' ? 'upgrade refused 401' : 'connect_error invalid_token');
    });

    it('T14 @OptionalAuth() on a message of a connection opened without a token (allowAnonymous): served anonymously, as no token is anywhere (Q26); a required-scope message still refused', async () => {
      expect(await ask(undefined, 'greet')).toEqual({ event: 'greet', data: null });
      expect(await ask(undefined, 'any')).toEqual(refusal({ error_description: 'Authentication is required', scope: 'orders:read orders:write' }));
    });
  });

  @Controller()
  class DoorRpc {
    @RequireScopes.fromArguments((request: { id?: unknown }) => (request.id === 'public-1' ? ['repo:read'] : ['repo:private']))
    @GrpcMethod('Orders', 'Find')
    find(@Payload() request: { id: string }) { return { id: request.id, by: 'find' }; }

    @RequireScopes.fromArguments((request: { id?: unknown }) => (request.id === 'public-1' ? ['repo:read'] : ['repo:private']))
    @GrpcMethod('Orders', 'Tail')
    tail(@Payload() request: { id: string }): Observable<{ id: string; by: string }> { return of({ id: request.id, by: 'tail' }); }

    @OptionalAuth()
    @GrpcMethod('Orders', 'Health')
    health(@Payload() request: { id: string }, @Agent('clientId') by?: string) { return { id: request.id, by: by ?? 'anonymous' }; }

    @RequireScopes.anyOf(['orders:read', 'orders:write'], ['orders:admin'])
    @RequireAuthentication({ maxAge: 300 })
    @GrpcMethod('Orders', 'Place')
    place(@Payload() request: { id: string }) { return { id: request.id, by: 'placed' }; }
  }

  describe('gRPC', () => {
    let app: INestApplication;
    let client: grpc.Client;
    let close: () => Promise<void>;
    const logger = new CapturingLogger();
    let lastTrailer: unknown;
    const unary = (method: string, t: string | undefined, request: object, scheme = 'Bearer') => {
      const metadata = new grpc.Metadata();
      if (t !== undefined) metadata.add('authorization', `${scheme} ${t}`);
      return new Promise<unknown>((resolve) => (client as unknown as Record<string, (r: object, m: grpc.Metadata, d: (e: grpc.ServiceError | null, r?: unknown) => void) => void>)[method]!.call(client, request, metadata, (error, reply) => {
        lastTrailer = error?.metadata.get('www-authenticate')[0];
        resolve(error ? { code: error.code, details: error.details } : reply);
      }));
    };
    beforeAll(async () => {
      @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, scopeHierarchy: HIERARCHY })], controllers: [DoorRpc] })
      class RpcModule {}
      app = await NestFactory.create(RpcModule, { logger: false, abortOnError: false });
      const { grpcUrl, tcp } = await listenHybrid(app, PROTO);
      const orders = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO)).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
      client = new orders(grpcUrl, grpc.credentials.createInsecure());
      close = async () => {
        client.close();
        await tcp.close();
        await app.close();
      };
    });
    afterAll(async () => {
      await close?.();
    });

    afterAll(() => {
      expectNoLeak(logger.lines, signatures(), logger.lines);
    });

    it('T10 argument-dependent scopes on a unary call: judged on the decoded request; an empty request needs repo:private', async () => {
      const read = token({ scope: 'repo:read' });
      expect(await unary('Find', read, { id: 'public-1' })).toEqual({ id: 'public-1', by: 'find' });
      expect(await unary('Find', read, { id: 'secret-1' })).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'The access token lacks a required scope' });
      expect(await unary('Find', read, {})).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'The access token lacks a required scope' });
    });

    it('T10 argument-dependent scopes on a server-streaming call: judged on its one request before any reply', async () => {
      const read = token({ scope: 'repo:read' });
      const tail = (id: string) => new Promise<{ replies: unknown[]; code?: number; details?: string }>((resolve) => {
        const metadata = new grpc.Metadata();
        metadata.add('authorization', `Bearer ${read}`);
        const stream = (client as unknown as { Tail: (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<unknown> }).Tail({ id }, metadata);
        const replies: unknown[] = [];
        stream.on('data', (reply) => replies.push(reply));
        stream.on('error', (error: grpc.ServiceError) => resolve({ replies, code: error.code, details: error.details }));
        stream.on('end', () => resolve({ replies }));
      });
      expect(await tail('public-1')).toEqual({ replies: [{ id: 'public-1', by: 'tail' }] });
      expect(await tail('secret-1')).toEqual({ replies: [], code: grpc.status.PERMISSION_DENIED, details: 'The access token lacks a required scope' });
    });

    it('T14 @OptionalAuth() on a unary call: anonymous without a token or under a scheme the module does not read (DPoP off); a verified agent; a forged Bearer token 16', async () => {
      expect(await unary('Health', undefined, { id: 'h' })).toEqual({ id: 'h', by: 'anonymous' });
      expect(await unary('Health', token({}), { id: 'h' })).toEqual({ id: 'h', by: 'agent-t' });
      expect(await unary('Health', forged(token({})), { id: 'h' })).toEqual({ code: grpc.status.UNAUTHENTICATED, details: 'The access token signature could not be verified' });
      expect(await unary('Health', forged(token({})), { id: 'h' }, 'DPoP')).toEqual({ id: 'h', by: 'anonymous' });
    });

    it('T29 a malformed or too deep act chain on a unary call: 16 UNAUTHENTICATED with the invalid_token challenge in the trailer, on a required and an optional route alike', async () => {
      const invalid = { code: grpc.status.UNAUTHENTICATED, details: 'The access token claims are invalid' };
      for (const act of [[{ sub: 'agent-b' }], { sub: 'agent-b', act: 'agent-c' }, { client_id: 7 }, actChain(33)]) {
        expect(await unary('Find', token({ act, scope: 'repo:private' }), { id: 'secret-1' })).toEqual(invalid);
        expect(lastTrailer).toMatch(/^Bearer error="invalid_token", error_description="The access token claims are invalid", resource_metadata="[^"]+"$/);
        expect(await unary('Health', token({ act }), { id: 'h' })).toEqual(invalid);
      }
      expect(await unary('Find', token({ act: actChain(32), scope: 'repo:private' }), { id: 'secret-1' })).toEqual({ id: 'secret-1', by: 'find' });
    });

    it('T8 T21 anyOf with maxAge on a unary call: a missing path 7, an old sign-in 16 with the RFC 9470 challenge in the trailer', async () => {
      const now = Math.floor(Date.now() / 1000);
      expect(await unary('Place', token({ scope: 'orders:read', auth_time: now }), { id: 'p' })).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'The access token lacks a required scope' });
      expect(await unary('Place', token({ scope: 'orders:admin', auth_time: now - 900 }), { id: 'p' })).toEqual({
        code: grpc.status.UNAUTHENTICATED, details: 'A stronger or more recent user authentication is required',
      });
      expect(lastTrailer).toMatch(/^Bearer error="insufficient_user_authentication", error_description="[^"]+", max_age="300", scope="orders:read orders:write", resource_metadata="[^"]+"$/);
      expect(await unary('Place', token({ scope: 'orders:admin', auth_time: now }), { id: 'p' })).toEqual({ id: 'p', by: 'placed' });
    });

    it('T13 fromArguments on a client-streaming gRPC handler fails the bootstrap, naming it: the call is judged when it opens, before any request (the function saw the stream, not a request)', async () => {
      const byId = (request: { id?: unknown }) => (request.id === 'secret-1' ? ['repo:private'] : ['repo:read']);
      @Controller()
      class StreamMethodArgs {
        @RequireScopes.fromArguments(byId)
        @GrpcStreamMethod('Orders', 'Follow')
        follow(requests: Observable<{ id: string }>) { return requests.pipe(map((r) => ({ id: r.id, by: 'follow' }))); }
      }
      @Controller()
      class StreamCallArgs {
        @GrpcStreamCall('Orders', 'Watch')
        @RequireScopes.fromArguments(byId)
        watch(call: { end: () => void }) { call.end(); }
      }
      for (const [controller, name] of [[StreamMethodArgs, 'StreamMethodArgs.follow'], [StreamCallArgs, 'StreamCallArgs.watch']] as const) {
        @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger })], controllers: [controller] })
        class StreamModule {}
        await expect(NestFactory.create(StreamModule, { logger: false, abortOnError: false })).rejects.toThrow(
          `KeycardModule: @RequireScopes.fromArguments() on ${name}, a client-streaming gRPC handler`,
        );
      }
    });
  });
});
