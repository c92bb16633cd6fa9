/**
 * Catalogue §W rows W1–W4, and the decisions taken before there is an `ExecutionContext`
 * (the decision-core issue, item 2): what a decision event and its audit record hold, for every
 * kind of refusal, on real Nest apps over loopback with the real local zone. Every test ends by
 * looking for its tokens in what it observed (events, audit lines, logs).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Injectable, Module, Param, VersioningType, type INestApplication, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { inspect } from 'node:util';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import {
  Agent, DecisionEvents, KeycardConnections, KeycardModule, KeycardRevocationModule, RequireAuthentication, RequireScopes, RevocationService,
  type DecisionEvent, type KeycardEvent,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { forged } from './support/contexts.js';
import { R } from './support/forge.js';
import { freePort } from './support/free-port.js';
import { graphqlWsClient, startGraphQLApp } from './support/graphql-app.js';
import { parseChallenge, send, type HttpAnswer } from './support/http.js';
import { CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';
import { startMcpApp } from './support/mcp-app.js';
import { LMAX_SECONDS, startInstance } from './support/revocation-app.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const traceparent = (traceId = TRACE_ID): [string, string] => ['traceparent', `00-${traceId}-00f067aa0ba902b7-01`];
const bearer = (token: string): [string, string] => ['Authorization', `Bearer ${token}`];
const now = () => Math.floor(Date.now() / 1000);

/** Every event of the app, decisions and the rest, in order. */
@Injectable()
class Recorder implements OnModuleInit {
  readonly events: KeycardEvent[] = [];
  constructor(private readonly source: DecisionEvents) {}
  onModuleInit(): void {
    this.source.observe((event) => this.events.push(event));
  }
  take(): KeycardEvent[] {
    return this.events.splice(0);
  }
}

@Controller({ path: 'orders', version: '1' })
class VersionedOrders {
  @Get(':id')
  @RequireScopes('orders:read')
  one(@Param('id') id: string, @Agent('agentId') agentId: string) {
    return { id, agentId };
  }

  @Get(':id/transfer')
  @RequireAuthentication({ acr: ['urn:kc:mfa'], maxAge: 300 })
  transfer() {
    return { transferred: true };
  }
}

/** Audit records of `api`'s log, parsed. */
const auditOf = (api: RunningApp) => api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

/** Nothing observed holds a token or its signature (INV7, W9). */
function expectNoToken(observed: unknown[], tokens: string[]): void {
  const text = [...observed.map((o) => (typeof o === 'string' ? o : JSON.stringify(o) + inspect(o, { depth: 6 })))].join('\n');
  for (const token of tokens) {
    expect(text.includes(token)).toBe(false);
    expect(text.includes(token.split('.')[2]!)).toBe(false);
  }
  expect(/Bearer ey/.test(text)).toBe(false);
}

describe('§W decision events: shape, refusal types, step-up (W1–W3)', () => {
  let zone: TestZone;
  let api: RunningApp;
  let recorder: Recorder;
  const tokens: string[] = [];
  const issue = (claims: Record<string, unknown>) => {
    const token = zone.issueToken({ sub: 'user-1', client_id: 'cli-1', keycard_app_id: 'app-7', scope: 'orders:read', ...claims });
    tokens.push(token);
    return token;
  };
  const get = (path: string, headers: [string, string][] = []) => send(api.url, 'GET', path, headers);

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R, auditLog: true, clockToleranceSeconds: 0 }, {
      controllers: [VersionedOrders],
      imports: [KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: LMAX_SECONDS })],
      providers: [Recorder],
      configure: (app: INestApplication) => {
        app.setGlobalPrefix('api');
        app.enableVersioning({ type: VersioningType.URI });
      },
    });
    recorder = api.app.get(Recorder);
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('W1 an admitted GET /api/v1/orders/42?x=1 with traceparent: one event with the agent, the user, the session, the call and the trace id; the audit line has the same fields', async () => {
    recorder.take();
    api.logger.lines.length = 0;
    const token = issue({ sid: 'sid-1', jti: 'jti-w1' });
    const res = await get('/api/v1/orders/42?x=1', [bearer(token), traceparent()]);
    expect(res.status).toBe(200);
    const expected = {
      type: 'admitted',
      performedBy: { issuer: zone.issuer, clientId: 'cli-1', agentId: 'app-7' },
      onBehalfOf: 'user-1',
      sessionId: 'sid-1',
      tokenId: 'jti-w1',
      call: { kind: 'http', method: 'GET', route: '/api/v1/orders/:id' },
      resource: R,
      requiredScopes: ['orders:read'],
      traceId: TRACE_ID,
    };
    const events = recorder.take();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject(expected);
    const [line] = auditOf(api);
    // The same fields: performedBy is issuer, agentId and agent (the client_id); onBehalfOf and sessionId are user and session.
    const { performedBy, onBehalfOf, sessionId, ...rest } = expected;
    expect(line).toMatchObject({ ...rest, version: 2, status: 200, issuer: performedBy.issuer, agentId: performedBy.agentId, agent: performedBy.clientId, user: onBehalfOf, session: sessionId });
    // Version 1 fields keep their meaning.
    expect(line).toMatchObject({ method: 'GET', route: '/api/v1/orders/:id' });
    expectNoToken([...events, ...api.logger.lines], [token]);
  });

  it('W2 no token, forged, expired, missing scope, step-up, revoked: one event each, its type and reason from the fixed vocabulary; the agent only from a verified token (rate-limited: test/node/decision-events-throttler.test.ts)', async () => {
    recorder.take();
    const valid = issue({ sid: 'sid-2' });
    const expired = issue({ iat: now() - 100, exp: now() - 10 });
    const lacking = issue({ scope: 'profile' });
    const weak = issue({ acr: 'urn:kc:pwd', auth_time: now() - 30 });
    const revoked = issue({ jti: 'jti-revoked' });
    await api.app.get(RevocationService).revoke({ issuer: zone.issuer, tokenId: 'jti-revoked' });
    const answers: [HttpAnswer, string][] = [
      [await get('/api/v1/orders/1'), 'no token'],
      [await get('/api/v1/orders/1', [bearer(forged(valid))]), 'forged'],
      [await get('/api/v1/orders/1', [bearer(expired)]), 'expired'],
      [await get('/api/v1/orders/1', [bearer(lacking)]), 'missing scope'],
      [await get('/api/v1/orders/1/transfer', [bearer(weak)]), 'step-up'],
      [await get('/api/v1/orders/1', [bearer(revoked)]), 'revoked'],
    ];
    expect(answers.map(([res, what]) => [what, res.status, parseChallenge(res.headers['www-authenticate'])?.params.error])).toEqual([
      ['no token', 401, undefined], ['forged', 401, 'invalid_token'], ['expired', 401, 'invalid_token'], ['missing scope', 403, 'insufficient_scope'],
      ['step-up', 401, 'insufficient_user_authentication'], ['revoked', 401, 'invalid_token'],
    ]);
    const events = (recorder.take().filter((e) => e.type !== 'revocation_applied') as DecisionEvent[]).filter((e) => e.status >= 400);
    expect(events.map((e) => [e.type, e.reason, e.performedBy?.agentId ?? null, e.onBehalfOf ?? null])).toEqual([
      ['refused', 'no_credentials', null, null],
      ['refused', 'invalid_token', null, null],
      ['refused', 'token_expired', null, null],
      ['refused', 'insufficient_scope', 'app-7', 'user-1'],
      ['step_up_required', 'insufficient_user_authentication', 'app-7', 'user-1'],
      ['revoked', 'revoked', 'app-7', 'user-1'],
    ]);
    expect(events[3]!.missingScopes).toEqual(['orders:read']);
    for (const e of events.slice(0, 3)) expect([e.performedBy, e.onBehalfOf, e.tokenId, e.sessionId, e.agent]).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(events[5]!.matchedBy).toEqual({ kind: 'token', issuer: zone.issuer, value: 'jti-revoked', source: 'service' });
    expectNoToken([...events, ...api.logger.lines], tokens);
  });

  it('W3 a 401 SU, then the same agent, user and sid with a stepped-up token: step_up_required (asked acr/max_age, the token\'s acr/auth_time) then admitted, both with the session and the trace id', async () => {
    recorder.take();
    api.logger.lines.length = 0;
    const TRACE = '0af7651916cd43dd8448eb211c80319c';
    const signedIn = now() - 600;
    const weak = issue({ sid: 'sid-3', acr: 'urn:kc:pwd', auth_time: signedIn });
    const stepped = issue({ sid: 'sid-3', acr: 'urn:kc:mfa', auth_time: now() });
    const refused = await get('/api/v1/orders/9/transfer', [bearer(weak), traceparent(TRACE)]);
    expect(refused.status).toBe(401);
    expect(parseChallenge(refused.headers['www-authenticate'])?.params).toMatchObject({ error: 'insufficient_user_authentication', acr_values: 'urn:kc:mfa', max_age: '300' });
    expect((await get('/api/v1/orders/9/transfer', [bearer(stepped), traceparent(TRACE)])).status).toBe(200);
    const [up, admitted] = recorder.take() as DecisionEvent[];
    expect(up).toMatchObject({
      type: 'step_up_required', reason: 'insufficient_user_authentication', sessionId: 'sid-3', traceId: TRACE,
      stepUp: { acrValues: 'urn:kc:mfa', maxAge: 300, acr: 'urn:kc:pwd', authTime: signedIn },
      performedBy: { agentId: 'app-7', clientId: 'cli-1' }, onBehalfOf: 'user-1',
    });
    expect(admitted).toMatchObject({ type: 'admitted', sessionId: 'sid-3', traceId: TRACE, performedBy: up!.performedBy, onBehalfOf: 'user-1' });
    const lines = auditOf(api);
    expect(lines.map((l) => [l.type, l.session, l.traceId])).toEqual([['step_up_required', 'sid-3', TRACE], ['admitted', 'sid-3', TRACE]]);
    expect(lines[0]!.stepUp).toEqual(up!.stepUp);
    expectNoToken([up, admitted, ...api.logger.lines], [weak, stepped]);
  });
});

describe('§W W4 revocation events', () => {
  const SSF_AUD = 'https://api.example.com/ssf';
  const SECRET = 'Bearer receiver-secret-0123456789';
  const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';

  it('W4 an SSF session-revoked applied (X1), then one request refused by it: revocation_applied (ssf, SET jti and txn, session, issuer, sid), then revoked with matchedBy = that entry', async () => {
    const zone = await TestZone.start({ audience: R });
    const at = await startInstance(zone, { revocation: { ssf: { audience: SSF_AUD, push: { authorization: SECRET }, streamId: 'stream-1' } } });
    try {
      const events: KeycardEvent[] = [];
      at.app.get(DecisionEvents).observe((event) => events.push(event));
      const tx = zone.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${at.url}/ssf/events`, authorization: SECRET });
      const token = zone.issueToken({ sub: 'user-1', client_id: 'cli-1', sid: 'sid-1', scope: 'orders:read', iat: now() - 5 });
      const subject = { format: 'complex', session: { format: 'opaque', id: 'sid-1' }, user: { format: 'iss_sub', iss: zone.issuer, sub: 'user-1' } };
      const set = tx.set(SESSION_REVOKED, { event_timestamp: now(), initiating_entity: 'admin', reason_admin: { en: 'test' } }, subject, { jti: 'set-1', txn: 'txn-1' });
      expect((await tx.push(set)).status).toBe(202);
      const refused = await at.get(token);
      expect(refused.status).toBe(401);
      expect(parseChallenge(refused.headers['www-authenticate'])?.params.error).toBe('invalid_token');
      const [applied, ...rest] = events;
      expect(applied).toEqual({
        type: 'revocation_applied', origin: 'local', carriersEnded: 0,
        entry: { kind: 'session', issuer: zone.issuer, value: 'sid-1', subject: 'user-1', source: 'ssf', setId: 'set-1', txn: 'txn-1' },
      });
      const revoked = rest.filter((e) => e.type === 'revoked') as DecisionEvent[];
      expect(revoked).toHaveLength(1);
      expect(revoked[0]).toMatchObject({ reason: 'revoked', detail: 'revoked', sessionId: 'sid-1', performedBy: { clientId: 'cli-1' } });
      expect(revoked[0]!.matchedBy).toEqual((applied as { entry: unknown }).entry);
      const line = auditOf(at).find((l) => l.type === 'revoked');
      expect(line?.matchedBy).toEqual((applied as { entry: unknown }).entry);
      expectNoToken([...events, ...at.logger.lines], [token]);
    } finally {
      await at.close();
      await zone.stop();
    }
  });
});

@WebSocketGateway()
class PingGateway {
  @RequireScopes('orders:read')
  @SubscribeMessage('whoami')
  whoami(@Agent('clientId') clientId: string) {
    return { event: 'whoami', data: clientId };
  }
}

describe('decisions before an ExecutionContext (the decision-core issue, item 2): connection refusals and MCP transport refusals are published', () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  async function gatewayApp(platform: 'ws' | 'socket.io'): Promise<{ app: INestApplication; port: number; logger: CapturingLogger; events: DecisionEvent[] }> {
    const logger = new CapturingLogger();
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true })], providers: [PingGateway] })
    class GatewayModule {}
    const app = await NestFactory.create(GatewayModule, { logger: false, abortOnError: false });
    const keycard = app.get(KeycardConnections);
    app.useWebSocketAdapter(keycard.guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
    const events: DecisionEvent[] = [];
    app.get(DecisionEvents).subscribe((event) => events.push(event));
    const port = await freePort();
    await app.listen(port, '127.0.0.1');
    return { app, port, logger, events };
  }

  it('a ws upgrade refused (forged token) and one opened: a decision event each, with call.carrier ws and no context; the audit line comes from the event', async () => {
    const { app, port, logger, events } = await gatewayApp('ws');
    const token = zone.issueToken({ sub: 'user-1', client_id: 'cli-1', keycard_app_id: 'app-7', scope: 'orders:read' });
    try {
      const refusedStatus = await new Promise<number>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${forged(token)}`, traceparent: traceparent()[1] } });
        socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        socket.once('open', () => resolve(101));
      });
      expect(refusedStatus).toBe(401);
      await new Promise<void>((resolve, reject) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
        socket.once('open', () => {
          socket.close();
          resolve();
        });
        socket.once('error', reject);
      });
      const opening = events.filter((e) => e.call.carrier === 'ws');
      expect(opening.map((e) => [e.type, e.reason, e.status, e.detail, e.call.route, e.performedBy?.agentId, e.context])).toEqual([
        ['refused', 'invalid_token', 401, 'signature_invalid', 'connection ws', undefined, undefined],
        ['admitted', undefined, 101, undefined, 'connection ws', 'app-7', undefined],
      ]);
      expect(opening[0]!.traceId).toBe(TRACE_ID);
      const lines = logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => [l.method, l.route, l.status, l.reason, l.type])).toEqual([
        ['WS', 'connection ws', 401, 'signature_invalid', 'refused'], ['WS', 'connection ws', 101, undefined, 'admitted'],
      ]);
      expectNoToken([...events, ...logger.lines], [token]);
    } finally {
      await app.close();
    }
  });

  it('a socket.io handshake without a token and one with an expired token: refused events with call.carrier socket.io', async () => {
    const { app, port, logger, events } = await gatewayApp('socket.io');
    const expired = zone.issueToken({ sub: 'user-1', client_id: 'cli-1', iat: now() - 600, exp: now() - 300 });
    const connect = (auth: Record<string, unknown>) => new Promise<string>((resolve) => {
      const socket = io(`http://127.0.0.1:${port}`, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
      socket.once('connect_error', (error: Error & { data?: { error?: string } }) => {
        socket.disconnect();
        resolve(error.data?.error ?? 'none');
      });
      socket.once('connect', () => {
        socket.disconnect();
        resolve('connected');
      });
    });
    try {
      expect(await connect({})).toBe('none');
      expect(await connect({ token: expired })).toBe('invalid_token');
      expect(events.map((e) => [e.type, e.reason, e.call.carrier, e.call.method, e.call.route, e.performedBy])).toEqual([
        ['refused', 'no_credentials', 'socket.io', 'WS', 'connection socket.io', undefined],
        ['refused', 'token_expired', 'socket.io', 'WS', 'connection socket.io', undefined],
      ]);
      expectNoToken([...events, ...logger.lines], [expired]);
    } finally {
      await app.close();
    }
  });

  it('a graphql-ws connection_init with a forged token: a refused event with call.carrier graphql-ws (Apollo)', async () => {
    const api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true });
    const events: DecisionEvent[] = [];
    api.app.get(DecisionEvents).subscribe((event) => events.push(event));
    const token = forged(zone.issueToken({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' }));
    const closers: (() => unknown)[] = [];
    try {
      const closed = await new Promise<number>((resolve) => {
        const client = graphqlWsClient(api.wsUrl, { authorization: `Bearer ${token}` }, ({ code }) => resolve(code));
        client.subscribe({ query: 'subscription { ticks }' }, { next: () => undefined, error: () => undefined, complete: () => undefined });
        closers.push(() => client.dispose());
      });
      await Promise.all(closers.map((close) => close()));
      expect(closed).toBe(4401);
      expect(events.map((e) => [e.type, e.reason, e.call.carrier, e.call.method, e.call.route, e.context])).toEqual([
        ['refused', 'invalid_token', 'graphql-ws', 'GRAPHQL-WS', 'connection', undefined],
      ]);
      expectNoToken([...events, ...api.logger.lines], [token]);
    } finally {
      await api.close();
    }
  });

  it('MCP Origin refused (403) and header–body mismatch (400): a refused event each, reason invalid_request, detail forbidden_origin / header_mismatch, audited', async () => {
    const port = await freePort();
    const api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, auditLog: true });
    const events: DecisionEvent[] = [];
    api.app.get(DecisionEvents).subscribe((event) => events.push(event));
    const token = zone.issueToken({ aud: `${api.url}/mcp`, sub: 'alice', client_id: 'agent-7', scope: 'mcp:tools' });
    const body = JSON.stringify({
      jsonrpc: '2.0', id: 7, method: 'tools/call',
      params: { name: 'whoami', arguments: {}, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } },
    });
    const headers: [string, string][] = [
      ['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'], ['MCP-Protocol-Version', '2026-07-28'],
      ['Mcp-Method', 'tools/call'], ['Mcp-Name', 'whoami'], bearer(token),
    ];
    try {
      const origin = await send(api.url, 'POST', '/mcp', [...headers, ['Origin', 'https://evil.example']], body);
      expect(origin.status).toBe(403);
      expect(origin.headers['www-authenticate']).toBeUndefined();
      const mismatch = await send(api.url, 'POST', '/mcp', headers.map(([n, v]): [string, string] => (n === 'Mcp-Name' ? [n, 'ping'] : [n, v])), body);
      expect(mismatch.status).toBe(400);
      expect(mismatch.json).toMatchObject({ error: { code: -32020 } });
      expect(events.map((e) => [e.type, e.reason, e.detail, e.status, e.call.kind, e.performedBy])).toEqual([
        ['refused', 'invalid_request', 'forbidden_origin', 403, 'http', undefined],
        ['refused', 'invalid_request', 'header_mismatch', 400, 'http', undefined],
      ]);
      const lines = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => [l.status, l.reason, l.type])).toEqual([[403, 'forbidden_origin', 'refused'], [400, 'header_mismatch', 'refused']]);
      expectNoToken([...events, ...api.logger.lines], [token]);
    } finally {
      await api.close();
    }
  });
});
