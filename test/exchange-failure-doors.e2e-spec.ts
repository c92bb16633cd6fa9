/**
 * A failed token exchange answered in every door's own refusal shape (catalogue Q8, I13, Q16, Q20):
 * a handler's `@Grant()` whose exchange the zone refused (`invalid_grant`) or could not serve (503),
 * rethrown by the handler (`access.access()`), reaches an Apollo or Mercurius resolver, a socket.io
 * or `ws` message, a gRPC unary call, an mcp-nest tool and a Nest `@Sse()` stream (where Nest runs no
 * filter once the response head is out: the SSE door's last event). Each client gets what an HTTP route gets
 * from `TokenExchangeExceptionFilter.answerFor()` (the status as the door's code, the OAuth error,
 * the fixed description, the challenge where the door has headers or trailers), never the error's
 * message, the zone's `error_description` or a stack. Real clients, a real local zone, loopback only.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { Controller, type INestApplication, type MessageEvent, Sse } from '@nestjs/common';
import { Query, Resolver } from '@nestjs/graphql';
import { GrpcMethod, Payload, Transport } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { McpController, Tool } from '@rekog/mcp-nest';
import { fileURLToPath } from 'node:url';
import { interval, map, type Observable, take } from 'rxjs';
import { Access, type AccessContext, Grant, KeycardConnections, TokenExchangeError } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak } from './support/contexts.js';
import { readEventStream } from './support/event-stream.js';
import { PRM, R } from './support/forge.js';
import { freePort } from './support/free-port.js';
import { askOverSocketIo, askOverWs } from './support/gateway-clients.js';
import { GRAPHQL_SERVERS, type GraphQLAnswer, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';
import { callToolWithToken, startMcpApp } from './support/mcp-app.js';
import { findOrder } from './support/rpc-app.js';

const UP = 'https://upstream.example.com';
const SECRET = 'exchange-failure-doors-secret';
const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));

/** What the zone says in its own error: no client of the API may read it. */
const ZONE_TEXT = 'zone-internal-detail-5f0c: session ended by policy';

/** The zone refuses the subject token (I13): HTTP answers 401 invalid_token "not active". */
const INVALID_GRANT = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: ZONE_TEXT }) } as const;
/** The zone is overloaded for longer than the API passes on (Q8, I18): HTTP answers 503 with Retry-After 300. */
const UNAVAILABLE = {
  kind: 'status',
  status: 503,
  headers: { 'retry-after': '600' },
  body: JSON.stringify({ error: 'temporarily_unavailable', error_description: ZONE_TEXT }),
} as const;

const INACTIVE = 'The access token is not active';
const ZONE_UNAVAILABLE = 'The authorization server is unavailable, retry later';

/** The upstream token, only if the grant obtained it: otherwise the grant's error, rethrown (as an app would). */
function upstreamToken(access: AccessContext): string {
  return `granted ${access.access(UP).scope}`;
}

@Resolver()
class GrantedResolver {
  /** Nullable: a failed field leaves the operation's other fields their own errors (a non-null one would null them all). */
  @Grant(UP, 'up:read')
  @Query(() => String, { nullable: true })
  upstream(@Access() access: AccessContext): string {
    return upstreamToken(access);
  }
}

@WebSocketGateway()
class GrantedGateway {
  @Grant(UP, 'up:read')
  @SubscribeMessage('upstream')
  upstream(@Access() access: AccessContext) {
    return { event: 'upstream', data: upstreamToken(access) };
  }
}

@Controller()
class GrantedRpcController {
  @Grant(UP, 'up:read')
  @GrpcMethod('Orders', 'Find')
  find(@Payload() request: { id: string }, @Access() access: AccessContext) {
    return { id: request.id, by: upstreamToken(access) };
  }
}

@Controller()
class GrantedEventsController {
  /** The grant's error rethrown while the stream makes its first event: Nest has sent the response head. */
  @Grant(UP, 'up:read')
  @Sse('events')
  events(@Access() access: AccessContext): Observable<MessageEvent> {
    return interval(10).pipe(take(2), map((n) => ({ data: { n, by: upstreamToken(access) } })));
  }

  /** An exchange failure met as the handler is called, nothing awaited: Nest has not sent the head yet. */
  @Sse('outage')
  outage(): Observable<MessageEvent> {
    throw new TokenExchangeError('the token endpoint could not be reached', 'unavailable', undefined, 503, 30);
  }

  /** Any other error out of the stream. */
  @Sse('broken')
  broken(): Observable<MessageEvent> {
    return interval(10).pipe(take(1), map((): MessageEvent => {
      throw new Error('the upstream feed broke');
    }));
  }
}

@McpController()
class GrantedTools {
  @Tool({ name: 'upstream', description: 'Calls the upstream API for the user' })
  @Grant(UP, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { by: upstreamToken(access) };
  }
}

/** One unary `Orders.Find` with `token`: its error status (the call must fail). */
async function failedFind(url: string, token: string): Promise<ServiceError> {
  const { error, reply } = await findOrder(url, token);
  if (error === null) throw new Error(`served: ${JSON.stringify(reply)}`);
  return error;
}

describe('Q8 a failed exchange answered in every door\'s own shape', () => {
  let zone: TestZone;
  const module = () => ({ zoneUrl: zone.issuer, clientCredentials: { clientId: 'svc', clientSecret: SECRET } });

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
  });
  beforeEach(() => zone.reset());
  afterAll(async () => {
    await zone?.stop();
  });

  /** Nothing of the failure leaked: no token, no zone text, no stack; the module's logs hold neither token nor zone text. */
  function expectNothingLeaked(received: unknown, token: string, logs: readonly string[]): void {
    expectNoLeak(received, [token, ZONE_TEXT], logs);
    const text = typeof received === 'string' ? received : JSON.stringify(received);
    expect(text).not.toMatch(/invalid_grant|TokenExchangeError|ResourceAccessError|no access to|exchange failed|Internal server error/i);
  }

  describe.each(GRAPHQL_SERVERS)('a resolver: %s', (_name, server) => {
    let api: RunningGraphQLApp;
    beforeAll(async () => {
      api = await startGraphQLApp(server, { ...module(), resource: R }, { providers: [GrantedResolver] });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('I13 invalid_grant → UNAUTHENTICATED, invalid_token "not active", the 401 challenge; nothing leaked', async () => {
      zone.faults.token = INVALID_GRANT;
      const token = zone.issueToken({ scope: 'profile' });
      const res = await postGraphQL(api.url, '{ upstream }', token);
      expect(zone.counts.token).toBe(1);
      expect(res.body.data?.upstream ?? null).toBeNull();
      expect(res.body.errors).toHaveLength(1);
      const [error] = res.body.errors!;
      expect(error.message).toBe(INACTIVE);
      expect(error.path).toEqual(['upstream']);
      expect(error.extensions).toMatchObject({ code: 'UNAUTHENTICATED', error: 'invalid_token', error_description: INACTIVE });
      expectFixedDescription(error.extensions?.error_description);
      // Apollo outside production adds the error's stack: one line, the description, as for the guard's refusals (N10).
      if (server === 'apollo') expect(error.extensions?.stacktrace).toEqual([INACTIVE]);
      // As for the guard's refusals (Q16): the field was the operation's only one, so the status is the refusal's.
      expect(res.status).toBe(401);
      expect(res.challenge).toMatchObject({ scheme: 'Bearer', params: { error: 'invalid_token', error_description: INACTIVE, resource_metadata: PRM } });
      expectNothingLeaked(res.text, token, api.logger.lines);
    });

    it('I14 invalid_request (the subject token unacceptable for the exchange) → FORBIDDEN, forbidden, a challenge without error code', async () => {
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_request', error_description: ZONE_TEXT }) };
      const token = zone.issueToken({ scope: 'profile' });
      const res = await postGraphQL(api.url, '{ upstream }', token);
      const [error] = res.body.errors!;
      const description = 'The access token cannot be used for this operation';
      expect(error.message).toBe(description);
      expect(error.extensions).toMatchObject({ code: 'FORBIDDEN', error: 'forbidden', error_description: description });
      expectFixedDescription(error.extensions?.error_description);
      expect(res.status).toBe(403);
      expect(res.challenge).toEqual({ scheme: 'Bearer', params: { resource_metadata: PRM }, names: ['resource_metadata'] });
      expectNothingLeaked(res.text, token, api.logger.lines);
    });

    it('Q8 the zone answering garbage (500, no JSON) → BAD_GATEWAY, bad_gateway; no challenge', async () => {
      zone.faults.token = { kind: 'status', status: 500, body: `<html>${ZONE_TEXT}</html>`, contentType: 'text/html' };
      const token = zone.issueToken({ scope: 'profile' });
      const res = await postGraphQL(api.url, '{ upstream }', token);
      const [error] = res.body.errors!;
      expect(error.extensions).toMatchObject({ code: 'BAD_GATEWAY', error: 'bad_gateway', error_description: 'The authorization server answered unexpectedly' });
      expect(res.challenge).toBeUndefined();
      expectNothingLeaked(res.text, token, api.logger.lines);
    });

    it('Q8 the zone overloaded (503) → SERVICE_UNAVAILABLE, temporarily_unavailable, Retry-After; logged without the zone text', async () => {
      zone.faults.token = UNAVAILABLE;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const raw = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: '{ upstream }' }),
      });
      const res = { status: raw.status, retryAfter: raw.headers.get('retry-after'), text: await raw.text() };
      const [error] = (JSON.parse(res.text) as GraphQLAnswer['body']).errors!;
      expect(error.message).toBe(ZONE_UNAVAILABLE);
      expect(error.extensions).toMatchObject({ code: 'SERVICE_UNAVAILABLE', error: 'temporarily_unavailable', error_description: ZONE_UNAVAILABLE });
      expectFixedDescription(error.extensions?.error_description);
      expect(res.status).toBe(503);
      expect(res.retryAfter).toBe('300');
      expectNothingLeaked(res.text, token, api.logger.lines);
      const logged = api.logger.levels.error.slice(before);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatch(/^Token exchange failed \(exchange_failed, unavailable\).*answered 503$/);
    });
    it('Q8 the fields of one operation failing their grant (502) → one error each, one log line for the request', async () => {
      zone.faults.token = { kind: 'status', status: 500, body: ZONE_TEXT, contentType: 'text/plain' };
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const res = await postGraphQL(api.url, '{ a: upstream b: upstream c: upstream }', token);
      expect(res.body.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([
        [['a'], 'BAD_GATEWAY'],
        [['b'], 'BAD_GATEWAY'],
        [['c'], 'BAD_GATEWAY'],
      ]);
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expectNothingLeaked(res.text, token, api.logger.lines);
    });
  });

  describe.each<[string, typeof askOverWs]>([['socket.io', askOverSocketIo], ['ws', askOverWs]])('a %s message', (platform, ask) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp('express', { ...module(), resource: R }, {
        controllers: [],
        providers: [GrantedGateway],
        configure: (app: INestApplication) =>
          app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app))),
      });
    });
    afterAll(async () => {
      await api?.close();
    });

    it(`I13 ${platform}: invalid_grant → the exception event { status: 'error', error: 'invalid_token', "not active" }; nothing leaked`, async () => {
      zone.faults.token = INVALID_GRANT;
      const token = zone.issueToken({ scope: 'profile' });
      const answer = await ask(Number(new URL(api.url).port), token, 'upstream');
      expect(zone.counts.token).toBe(1);
      expect(answer).toEqual({ event: 'exception', data: { status: 'error', error: 'invalid_token', error_description: INACTIVE } });
      expectNothingLeaked(answer, token, api.logger.lines);
    });

    it(`Q8 ${platform}: the zone overloaded (503) → the exception event temporarily_unavailable; nothing leaked`, async () => {
      zone.faults.token = UNAVAILABLE;
      const token = zone.issueToken({ scope: 'profile' });
      const answer = await ask(Number(new URL(api.url).port), token, 'upstream');
      expect(answer).toEqual({ event: 'exception', data: { status: 'error', error: 'temporarily_unavailable', error_description: ZONE_UNAVAILABLE } });
      expectNothingLeaked(answer, token, api.logger.lines);
    });
  });

  describe('a gRPC unary call', () => {
    let api: RunningApp;
    let grpcUrl: string;
    beforeAll(async () => {
      grpcUrl = `127.0.0.1:${await freePort()}`;
      api = await startApp('express', { ...module(), resource: R }, {
        controllers: [GrantedRpcController],
        configure: (app: INestApplication) =>
          app.connectMicroservice({ transport: Transport.GRPC, options: { package: 'orders', protoPath: PROTO, url: grpcUrl } }, { inheritAppConfig: true }),
      });
      await api.app.startAllMicroservices();
    });
    afterAll(async () => {
      await api?.close();
    });

    /** What a gRPC client reads of a failure: status, details, the trailers a refusal carries. */
    const received = (error: ServiceError) => ({
      code: error.code,
      details: error.details,
      challenge: error.metadata?.get('www-authenticate')[0],
      retryAfter: error.metadata?.get('retry-after')[0],
    });

    it('I13 Q20 gRPC: invalid_grant → 16 UNAUTHENTICATED, fixed details, the challenge as trailers; nothing leaked', async () => {
      zone.faults.token = INVALID_GRANT;
      const token = zone.issueToken({ scope: 'profile' });
      const error = await failedFind(grpcUrl, token);
      expect(zone.counts.token).toBe(1);
      const answer = received(error);
      expect(answer).toMatchObject({ code: GrpcStatus.UNAUTHENTICATED, details: INACTIVE });
      expect(answer.challenge).toBe(`Bearer error="invalid_token", error_description="${INACTIVE}", resource_metadata="${PRM}"`);
      expectNothingLeaked({ ...answer, message: error.message }, token, api.logger.lines);
    });

    it('Q8 gRPC: the zone overloaded (503) → 14 UNAVAILABLE, fixed details, retry-after 300; nothing leaked', async () => {
      zone.faults.token = UNAVAILABLE;
      const token = zone.issueToken({ scope: 'profile' });
      const answer = received(await failedFind(grpcUrl, token));
      expect(answer).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: ZONE_UNAVAILABLE, retryAfter: '300' });
      expectNothingLeaked(answer, token, api.logger.lines);
    });

    it('Q8 gRPC: the zone misconfigured for this service (invalid_client) → 13 INTERNAL "The service is misconfigured"', async () => {
      zone.faults.token = { kind: 'status', status: 401, body: JSON.stringify({ error: 'invalid_client', error_description: ZONE_TEXT }) };
      const token = zone.issueToken({ scope: 'profile' });
      const answer = received(await failedFind(grpcUrl, token));
      expect(answer).toMatchObject({ code: GrpcStatus.INTERNAL, details: 'The service is misconfigured' });
      expectNothingLeaked(answer, token, api.logger.lines);
    });
  });

  describe.each(['express', 'fastify'] as const)('an @Sse() route on %s', (adapter) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { ...module(), resource: R }, { controllers: [GrantedEventsController] });
    });
    afterAll(async () => {
      await api?.close();
    });
    const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

    it(`I13 Q20 ${adapter} SSE: invalid_grant met while making an event (the head sent) → one \`event: error\` {invalid_token, "not active"}, then the end; nothing leaked`, async () => {
      zone.faults.token = INVALID_GRANT;
      const token = zone.issueToken({ scope: 'profile' });
      const answer = await readEventStream(`${api.url}/events`, bearer(token));
      expect({ status: answer.status, contentType: answer.contentType, events: answer.events.map(({ event, data }) => ({ event, data })) }).toEqual({
        status: 200,
        contentType: 'text/event-stream',
        events: [{ event: 'error', data: JSON.stringify({ error: 'invalid_token', error_description: INACTIVE }) }],
      });
      expectNothingLeaked(answer.events, token, api.logger.lines);
    });

    it(`Q8 Q20 ${adapter} SSE: the zone overloaded (503) while making an event → one \`event: error\` {temporarily_unavailable}, then the end; one error line`, async () => {
      zone.faults.token = UNAVAILABLE;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const answer = await readEventStream(`${api.url}/events`, bearer(token));
      expect({ status: answer.status, events: answer.events.map(({ event, data }) => ({ event, data })) }).toEqual({
        status: 200,
        events: [{ event: 'error', data: JSON.stringify({ error: 'temporarily_unavailable', error_description: ZONE_UNAVAILABLE }) }],
      });
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expectNothingLeaked(answer.events, token, api.logger.lines);
    });

    it(`Q8 ${adapter} SSE: an exchange failure before the head is sent → the filter's answer as on any route: 503 JSON, Retry-After 30, one error line`, async () => {
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const res = await send(api.url, 'GET', '/outage', [['Authorization', `Bearer ${token}`], ['Accept', 'text/event-stream']]);
      expect({ status: res.status, body: res.json, retryAfter: res.headers['retry-after'] }).toEqual({
        status: 503, body: { error: 'temporarily_unavailable', error_description: ZONE_UNAVAILABLE }, retryAfter: '30',
      });
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expectNothingLeaked(res.text, token, api.logger.lines);
    });

    it(`Q8 ${adapter} SSE: any other error out of the stream goes on as it is (Nest's own \`event: error\`), and the module logs nothing`, async () => {
      const before = api.logger.levels.error.length;
      const answer = await readEventStream(`${api.url}/broken`, bearer(zone.issueToken({ scope: 'profile' })));
      expect({ status: answer.status, events: answer.events.map(({ event, data }) => ({ event, data })) }).toEqual({
        status: 200, events: [{ event: 'error', data: 'Internal server error' }],
      });
      expect(api.logger.levels.error.slice(before)).toEqual([]);
    });
  });

  describe('an mcp-nest tool (over HTTP, judged as an rpc call)', () => {
    let api: Awaited<ReturnType<typeof startMcpApp>>;
    let resource: string;
    beforeAll(async () => {
      const port = await freePort();
      resource = `http://127.0.0.1:${port}/mcp`;
      api = await startMcpApp({ adapter: 'express', zoneUrl: '', port, keycard: module(), tools: [GrantedTools] });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('I13 MCP: invalid_grant → the tool\'s isError result "invalid_token: The access token is not active"; nothing leaked', async () => {
      zone.faults.token = INVALID_GRANT;
      const token = zone.issueToken({ aud: resource, scope: 'mcp:tools' });
      const result = await callToolWithToken(`${api.url}/mcp`, token, 'upstream');
      expect(zone.counts.token).toBe(1);
      expect(result.isError).toBe(true);
      expect(result.content).toEqual([{ type: 'text', text: `invalid_token: ${INACTIVE}` }]);
      expectNothingLeaked(result, token, api.logger.lines);
    });
  });
});
