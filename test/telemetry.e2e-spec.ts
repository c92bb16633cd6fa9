/**
 * Catalogue §W: decision events in OpenTelemetry, with a real SDK (in-memory span exporter, a
 * metric reader) inside real Nest apps on loopback. Server spans come from `serverSpans`, as the
 * HTTP instrumentation makes them; doors without one (gRPC here) get the module's own
 * `keycard.decision` span. Every test ends by scanning what the SDK and the logs hold for the
 * tokens it used (W9).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Controller, Get, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { fileURLToPath } from 'node:url';
import { Access, Agent, DecisionEvents, Grant, KeycardModule, RequireScopes, type AccessContext, type DecisionEvent, type KeycardEvent } from '../lib/index.js';
import { KEYCARD_ATTRIBUTES as A, KeycardTelemetry, KeycardTelemetryModule, OTHER_AGENT, type KeycardTelemetryOptions } from '../lib/telemetry/index.js';
import { TestZone } from '../lib/testing/index.js';
import { forged } from './support/contexts.js';
import { R } from './support/forge.js';
import { postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { parseChallenge, send } from './support/http.js';
import { ADAPTERS, CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';
import { freePort } from './support/free-port.js';
import { startMcpApp } from './support/mcp-app.js';
import { listenHybrid } from './support/rpc-app.js';
import { finished, points, secretsToScan, serverSpans, startTestSdk, type TestSdk } from './support/telemetry.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

/** Every decision event of the app. */
@Injectable()
class Recorder implements OnModuleInit {
  readonly events: DecisionEvent[] = [];
  constructor(private readonly decisions: DecisionEvents) {}
  onModuleInit(): void {
    this.decisions.subscribe((event) => this.events.push(event));
  }
}

/** An app's subscriber with a bug. */
@Injectable()
class Thrower implements OnModuleInit {
  constructor(private readonly decisions: DecisionEvents) {}
  onModuleInit(): void {
    this.decisions.subscribe(() => {
      throw new Error('subscriber bug');
    });
  }
}

describe('§W decision events in OpenTelemetry', () => {
  let sdk: TestSdk;
  let zone: TestZone;
  /** Every token and secret a test used: none may appear in any span, metric or log (W9). */
  const { secrets, logs, remember } = secretsToScan();
  const issue = (claims: Record<string, unknown>) => remember(zone.issueToken({ keycard_app_id: 'app-7', ...claims }));

  beforeAll(async () => {
    sdk = startTestSdk();
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  async function withHttpApp(adapter: 'express' | 'fastify', run: (api: RunningApp) => Promise<void>, options?: KeycardTelemetryOptions): Promise<void> {
    const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, { imports: [KeycardTelemetryModule.forRoot(options)], configure: serverSpans });
    try {
      expect(api.app.get(KeycardTelemetry).enabled).toBe(true);
      await run(api);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  }

  const bearer = (token: string): [string, string] => ['Authorization', `Bearer ${token}`];
  const lastServerSpan = (): ReadableSpan => finished(sdk.spans).at(-1)!;

  it.each(ADAPTERS)('W6 %s: the server span of an admitted request, a 403 and a 401 carries the decision, the agent and the scopes; status stays unset', async (adapter) => {
    await withHttpApp(adapter, async (api) => {
      const admitted = issue({ sub: 'user-1', client_id: 'cli-1', sid: 'sid-1', jti: 'jti-1', scope: 'orders:read' });
      let res = await send(api.url, 'GET', '/orders?x=1', [bearer(admitted), ['traceparent', TRACEPARENT]]);
      expect(res.status).toBe(200);
      let span = lastServerSpan();
      expect(span.spanContext().traceId).toBe(TRACE_ID);
      expect(span.attributes).toEqual(expect.objectContaining({
        [A.USER]: 'user-1', [A.ISSUER]: zone.issuer, [A.AGENT_ID]: 'app-7', [A.CLIENT_ID]: 'cli-1', [A.SESSION_ID]: 'sid-1',
        [A.TOKEN_ID]: 'jti-1', [A.DECISION]: 'admitted', [A.CALL_KIND]: 'http', [A.RESOURCE]: R, [A.SCOPES_REQUIRED]: ['orders:read'],
      }));
      expect(span.attributes[A.REASON]).toBeUndefined();
      expect(span.status.code).toBe(SpanStatusCode.UNSET);

      const lacking = issue({ sub: 'user-1', client_id: 'cli-1', jti: 'jti-2', scope: 'orders:read' });
      res = await send(api.url, 'POST', '/orders', [bearer(lacking), ['Content-Type', 'application/json']], '{}');
      expect(res.status).toBe(403);
      expect(parseChallenge(res.headers['www-authenticate'])?.params).toMatchObject({ error: 'insufficient_scope', scope: 'orders:read orders:write' });
      span = lastServerSpan();
      expect(span.attributes).toEqual(expect.objectContaining({
        [A.DECISION]: 'refused', [A.REASON]: 'insufficient_scope', [A.AGENT_ID]: 'app-7', [A.TOKEN_ID]: 'jti-2',
        [A.SCOPES_REQUIRED]: ['orders:read', 'orders:write'], [A.SCOPES_MISSING]: ['orders:write'],
      }));
      expect(span.status.code).toBe(SpanStatusCode.UNSET);

      res = await send(api.url, 'GET', '/orders', [bearer(forged(admitted))]);
      expect(res.status).toBe(401);
      expect(parseChallenge(res.headers['www-authenticate'])?.params).toMatchObject({ error: 'invalid_token' });
      span = lastServerSpan();
      expect(span.attributes).toEqual(expect.objectContaining({ [A.DECISION]: 'refused', [A.REASON]: 'invalid_token', [A.REASON_DETAIL]: 'signature_invalid' }));
      // Nothing of an unverified token: no agent, user or token id (W2).
      for (const key of [A.USER, A.AGENT_ID, A.CLIENT_ID, A.TOKEN_ID, A.ISSUER]) expect(span.attributes[key]).toBeUndefined();
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(finished(sdk.spans, 'keycard.decision')).toEqual([]); // the active span was used
    });
  });
  it.each(ADAPTERS)('%s: audit records carry the traceId and spanId of the server span the call was decided in (the issue\'s item 3)', async (adapter) => {
    await withHttpApp(adapter, async (api) => {
      const token = issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' });
      expect((await send(api.url, 'GET', '/orders', [bearer(token), ['traceparent', TRACEPARENT]])).status).toBe(200);
      expect((await send(api.url, 'GET', '/orders', [])).status).toBe(401);
      const spans = finished(sdk.spans).slice(-2);
      const records = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.map((r) => [r.status, r.traceId, r.spanId])).toEqual([
        [200, TRACE_ID, spans[0]!.spanContext().spanId],
        [401, spans[1]!.spanContext().traceId, spans[1]!.spanContext().spanId],
      ]);
    });
  });

  it('W6 GraphQL over HTTP (Apollo): one operation with an admitted field and a refused one leaves the refusal on the server span', async () => {
    const api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { imports: [KeycardTelemetryModule.forRoot()], configure: serverSpans });
    try {
      const token = issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' });
      const answer = await postGraphQL(api.url, '{ whoami ledger }', token);
      expect(answer.body.data).toEqual({ whoami: 'cli-1/user-1', ledger: null });
      expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read ledger:read' });
      const span = lastServerSpan();
      expect(span.attributes).toEqual(expect.objectContaining({
        [A.DECISION]: 'refused', [A.REASON]: 'insufficient_scope', [A.CALL_KIND]: 'graphql', [A.CALL_NAME]: 'graphql query anonymous.ledger',
        [A.SCOPES_MISSING]: ['ledger:read'], [A.AGENT_ID]: 'app-7', [A.USER]: 'user-1',
      }));
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  @Controller()
  class OrdersRpc {
    @RequireScopes('orders:read')
    @GrpcMethod('Orders', 'Find')
    find(@Payload() request: { id: string }, @Agent('clientId') clientId: string) {
      return { id: request.id, by: clientId };
    }
  }

  it('W7 gRPC unary refused with UNAUTHENTICATED (16) and PERMISSION_DENIED (7): a keycard.decision span each, call kind rpc, status unset', async () => {
    const logger = new CapturingLogger();
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger }), KeycardTelemetryModule.forRoot()], controllers: [OrdersRpc] })
    class RpcAppModule {}
    const app = await NestFactory.create(RpcAppModule, { logger: false, abortOnError: false });
    const { grpcUrl, tcp } = await listenHybrid(app, PROTO);
    const definition = protoLoader.loadSync(PROTO);
    const Orders = (grpc.loadPackageDefinition(definition).orders as { Orders: grpc.ServiceClientConstructor }).Orders;
    const client = new Orders(grpcUrl, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Find: (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void };
    const find = (token?: string) => new Promise<grpc.ServiceError | null>((resolve) => {
      const metadata = new grpc.Metadata();
      if (token !== undefined) metadata.add('authorization', `Bearer ${token}`);
      client.Find({ id: '1' }, metadata, (error) => resolve(error));
    });
    try {
      expect((await find())?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect((await find(issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:write' })))?.code).toBe(grpc.status.PERMISSION_DENIED);
      const spans = finished(sdk.spans, 'keycard.decision').slice(-2);
      expect(spans.map((s) => [s.attributes[A.CALL_KIND], s.attributes[A.CALL_NAME], s.attributes[A.REASON], s.attributes[A.AGENT_ID], s.status.code])).toEqual([
        ['rpc', 'rpc OrdersRpc.find', 'no_credentials', undefined, SpanStatusCode.UNSET],
        ['rpc', 'rpc OrdersRpc.find', 'insufficient_scope', 'app-7', SpanStatusCode.UNSET],
      ]);
      expect(spans[1]!.attributes[A.SCOPES_MISSING]).toEqual(['orders:read']);
    } finally {
      client.close();
      await tcp.close();
      await app.close();
      logs.push(...logger.lines);
    }
  });

  it('W7 MCP tools/call refused with 403: call kind mcp, the tool from the body (not from Mcp-Name), status unset', async () => {
    const port = await freePort();
    const api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, imports: [KeycardTelemetryModule.forRoot()], configure: serverSpans });
    try {
      const token = remember(zone.issueToken({ aud: `${api.url}/mcp`, sub: 'alice', client_id: 'agent-7', scope: 'mcp:tools' }));
      const res = await send(api.url, 'POST', '/mcp', [
        ['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'], ['MCP-Protocol-Version', '2025-06-18'],
        ['Mcp-Method', 'tools/call'], ['Mcp-Name', 'whoami'], bearer(token),
      ], JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'purge_orders', arguments: {} } }));
      expect(res.status).toBe(403);
      expect(parseChallenge(res.headers['www-authenticate'])?.params).toMatchObject({ error: 'insufficient_scope', scope: 'mcp:tools admin' });
      const span = lastServerSpan();
      expect(span.attributes).toEqual(expect.objectContaining({
        [A.CALL_KIND]: 'mcp', [A.MCP_METHOD]: 'tools/call', [A.MCP_TOOL]: 'purge_orders', [A.DECISION]: 'refused',
        [A.REASON]: 'insufficient_scope', [A.SCOPES_MISSING]: ['admin'], [A.AGENT_ID]: 'agent-7', [A.USER]: 'alice',
      }));
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  it('W7 an MCP method the spec does not define is recorded as _OTHER: a caller never chooses the attribute value (no unbounded series, no control characters)', async () => {
    const port = await freePort();
    const api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, imports: [KeycardTelemetryModule.forRoot()], configure: serverSpans });
    try {
      for (const method of ['evil\n\u001b[31mmethod', 'x'.repeat(5000), 'rand/8f3a']) {
        const res = await send(api.url, 'POST', '/mcp', [
          ['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'],
        ], JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: {} }));
        expect(res.status).toBe(401);
        expect(parseChallenge(res.headers['www-authenticate'])?.scheme).toBe('Bearer');
        expect(lastServerSpan().attributes[A.MCP_METHOD]).toBe('_OTHER');
      }
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  /** Data points of `name` as `decision reason kind [agent]` → value. */
  async function series(name: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const p of points(await sdk.collect(), name)) {
      const a = p.attributes;
      out.set([a[A.DECISION], a[A.REASON] ?? '-', a[A.CALL_KIND], a[A.AGENT_ID]].filter((v) => v !== undefined).join(' '), p.value);
    }
    return out;
  }
  const delta = (after: Map<string, number>, before: Map<string, number>) =>
    Object.fromEntries([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]).filter(([, v]) => v !== 0));

  it('W8 after 1 000 mixed decisions: keycard.decisions by decision, reason and door, keycard.verification.duration in seconds (metrics.verificationDuration on), no agent attribute', async () => {
    await withHttpApp('express', async (api) => {
      const before = await series('keycard.decisions');
      const durationsBefore = await series('keycard.verification.duration');
      const valid = issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' });
      const lacking = issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:write' });
      const kinds: [string, string][][] = [[bearer(valid)], [], [bearer(forged(valid))], [bearer(lacking)]].map((h) => h as [string, string][]);
      const next = { i: 0 };
      const worker = async () => {
        for (let i = next.i++; i < 1_000; i = next.i++) await send(api.url, 'GET', '/orders', kinds[i % 4]);
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      expect(delta(await series('keycard.decisions'), before)).toEqual({
        'admitted - http': 250, 'refused no_credentials http': 250, 'refused invalid_token http': 250, 'refused insufficient_scope http': 250,
      });
      const durations = delta(await series('keycard.verification.duration'), durationsBefore);
      expect(Object.values(durations).reduce((a: number, b) => a + Number(b), 0)).toBe(1_000);
      const metric = (await sdk.collect()).scopeMetrics.flatMap((m) => m.metrics).find((m) => m.descriptor.name === 'keycard.verification.duration');
      expect(metric?.descriptor.unit).toBe('s');
      for (const p of points(await sdk.collect(), 'keycard.decisions')) expect(p.attributes[A.AGENT_ID]).toBeUndefined();
    }, { metrics: { verificationDuration: true } });
  }, 90_000);

  it('W8 with metrics.agentAttribute, distinct agents past the default cap of 1 000 make 1 000 agent series plus one _other (2 000 agents here: the row\'s 10 000 only grow _other)', async () => {
    const api = await startApp('express', { zoneUrl: zone.issuer, resource: R }, { imports: [KeycardTelemetryModule.forRoot({ traces: false, metrics: { agentAttribute: true } })] });
    try {
      const next = { i: 0 };
      const worker = async () => {
        for (let i = next.i++; i < 2_000; i = next.i++) {
          const res = await send(api.url, 'GET', '/orders', [bearer(issue({ client_id: `cli-${i}`, keycard_app_id: `agent-${i}`, scope: 'orders:read' }))]);
          expect(res.status).toBe(200);
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      const agents = points(await sdk.collect(), 'keycard.decisions').filter((p) => String(p.attributes[A.AGENT_ID]).startsWith('agent-') || p.attributes[A.AGENT_ID] === OTHER_AGENT);
      const own = agents.filter((p) => p.attributes[A.AGENT_ID] !== OTHER_AGENT);
      expect(own).toHaveLength(1_000);
      expect(own.every((p) => p.value === 1 && p.attributes[A.ISSUER] === zone.issuer)).toBe(true);
      expect(agents.filter((p) => p.attributes[A.AGENT_ID] === OTHER_AGENT).map((p) => p.value)).toEqual([1_000]);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  }, 120_000);

  it('W8 GraphQL over HTTP counts one decision per request, the one its audit record reports: 40 refused aliases count 1 refusal; admitted and refused fields count the refusal', async () => {
    const api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { imports: [KeycardTelemetryModule.forRoot()], configure: serverSpans });
    try {
      const token = issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' });
      let before = await series('keycard.decisions');
      const aliases = await postGraphQL(api.url, `{ ${Array.from({ length: 40 }, (_, i) => `l${i}: ledger`).join(' ')} }`, token);
      expect(aliases.body.errors).toHaveLength(40);
      expect(aliases.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read ledger:read' });
      expect(delta(await series('keycard.decisions'), before)).toEqual({ 'refused insufficient_scope graphql': 1 });

      before = await series('keycard.decisions');
      const mixed = await postGraphQL(api.url, '{ whoami ledger again: whoami }', token);
      expect(mixed.body.data).toEqual({ whoami: 'cli-1/user-1', ledger: null, again: 'cli-1/user-1' });
      expect(delta(await series('keycard.decisions'), before)).toEqual({ 'refused insufficient_scope graphql': 1 });

      before = await series('keycard.decisions');
      expect((await postGraphQL(api.url, '{ whoami again: whoami }', token)).body.data).toEqual({ whoami: 'cli-1/user-1', again: 'cli-1/user-1' });
      expect(delta(await series('keycard.decisions'), before)).toEqual({ 'admitted - graphql': 1 });
      const records = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as { type: string });
      expect(records.map((r) => r.type)).toEqual(['refused', 'refused', 'admitted']);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  it('W6 control characters and bidi overrides of verified claims are escaped in span attributes, as the audit line escapes them (CWE-117), and capped', async () => {
    await withHttpApp('express', async (api) => {
      const token = issue({ sub: 'user\n\u001b[31m-1', client_id: 'cli-\u202egnp.exe', sid: 'x'.repeat(5_000), jti: 'j\u2028ti', scope: 'orders:read' });
      expect((await send(api.url, 'GET', '/orders', [bearer(token)])).status).toBe(200);
      const { attributes } = lastServerSpan();
      expect([attributes[A.USER], attributes[A.CLIENT_ID], attributes[A.TOKEN_ID]]).toEqual(['user\\n\\u001b[31m-1', 'cli-\\u202egnp.exe', 'j\\u2028ti']);
      expect(String(attributes[A.SESSION_ID])).toHaveLength(257);
      const record = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).at(-1)!;
      expect(record).toContain('"user":"user\\n\\u001b[31m-1"');
    });
  });

  it('W11 two zones with the same client_id differ by keycard.issuer; two credentials of one Keycard app share keycard.agent.id', async () => {
    const z2 = await TestZone.start({ audience: R });
    const api = await startApp('express', { zones: [zone.issuer, z2.issuer], resource: R }, { imports: [KeycardTelemetryModule.forRoot()], providers: [Recorder], configure: serverSpans });
    try {
      const tokens = [
        issue({ client_id: 'agent-x', keycard_app_id: undefined, scope: 'orders:read' }),
        remember(z2.issueToken({ client_id: 'agent-x', scope: 'orders:read' })),
        issue({ client_id: 'cred-1', scope: 'orders:read' }),
        issue({ client_id: 'cred-2', scope: 'orders:read' }),
      ];
      const seen: unknown[] = [];
      for (const token of tokens) {
        expect((await send(api.url, 'GET', '/orders', [bearer(token)])).status).toBe(200);
        const span = lastServerSpan();
        seen.push([span.attributes[A.ISSUER], span.attributes[A.AGENT_ID], span.attributes[A.CLIENT_ID]]);
      }
      expect(seen).toEqual([[zone.issuer, 'agent-x', 'agent-x'], [z2.issuer, 'agent-x', 'agent-x'], [zone.issuer, 'app-7', 'cred-1'], [zone.issuer, 'app-7', 'cred-2']]);
      expect(api.app.get(Recorder).events.map((e) => e.performedBy)).toEqual([
        { issuer: zone.issuer, agentId: 'agent-x', clientId: 'agent-x' }, { issuer: z2.issuer, agentId: 'agent-x', clientId: 'agent-x' },
        { issuer: zone.issuer, agentId: 'app-7', clientId: 'cred-1' }, { issuer: zone.issuer, agentId: 'app-7', clientId: 'cred-2' },
      ]);
    } finally {
      await api.close();
      await z2.stop();
      logs.push(...api.logger.lines);
    }
  });

  it('W12 a subscriber that throws changes no answer: one error line, and telemetry and the audit log still get the event', async () => {
    const api = await startApp('express', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { imports: [KeycardTelemetryModule.forRoot()], providers: [Thrower], configure: serverSpans });
    try {
      const token = issue({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' });
      const res = await send(api.url, 'GET', '/orders', [bearer(token)]);
      expect(res.status).toBe(200);
      expect(api.logger.lines.filter((l) => l.includes('subscriber failed'))).toEqual(['A decision event subscriber failed: Error']);
      expect(lastServerSpan().attributes).toEqual(expect.objectContaining({ [A.DECISION]: 'admitted', [A.AGENT_ID]: 'app-7' }));
      expect(api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as { status: number })).toEqual([
        expect.objectContaining({ status: 200, agent: 'cli-1' }),
      ]);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  @Controller()
  class GrantedOrders {
    @Get('granted')
    @RequireScopes('orders:read')
    @Grant('https://upstream.example.com', 'up:read')
    granted(@Access() access: AccessContext) {
      return { has: access.has('https://upstream.example.com') };
    }
  }

  it('W5 @Grant exchange, a cache miss then a hit: two exchanged events (miss, hit) with the target, scopes, zone and the inbound agent; one keycard.exchange CLIENT span on the miss, its traceparent received by the zone', async () => {
    const UP = 'https://upstream.example.com';
    const SECRET = 'exchange-secret-0123456789';
    secrets.push(SECRET);
    const upZone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc-1', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
    const events: KeycardEvent[] = [];
    const api = await startApp('express', { zoneUrl: upZone.issuer, resource: R, clientCredentials: { clientId: 'svc-1', clientSecret: SECRET } }, {
      controllers: [GrantedOrders],
      imports: [KeycardTelemetryModule.forRoot()],
      configure: serverSpans,
    });
    api.app.get(DecisionEvents).observe((event) => events.push(event));
    try {
      const token = remember(upZone.issueToken({ sub: 'user-1', client_id: 'cli-1', keycard_app_id: 'app-7', scope: 'orders:read' }));
      for (let i = 0; i < 2; i++) {
        const res = await send(api.url, 'GET', '/granted', [bearer(token), ['traceparent', TRACEPARENT]]);
        expect({ status: res.status, json: res.json }).toEqual({ status: 200, json: { has: true } });
      }
      const exchanged = events.filter((e) => e.type === 'exchanged');
      const expected = { type: 'exchanged', grant: 'token_exchange', resource: UP, scopes: ['up:read'], zone: upZone.issuer, performedBy: { issuer: upZone.issuer, agentId: 'app-7', clientId: 'cli-1' }, onBehalfOf: 'user-1' };
      expect(exchanged).toEqual([{ ...expected, cache: 'miss' }, { ...expected, cache: 'hit' }]);
      const spans = finished(sdk.spans, 'keycard.exchange');
      expect(spans).toHaveLength(1);
      const [span] = spans;
      expect(span!.kind).toBe(SpanKind.CLIENT);
      expect(span!.spanContext().traceId).toBe(TRACE_ID);
      expect(span!.attributes).toEqual(expect.objectContaining({ 'keycard.exchange.grant': 'token_exchange', 'keycard.resource': UP, 'keycard.scopes.requested': ['up:read'], 'keycard.issuer': upZone.issuer }));
      const received = upZone.tokenRequests.map((r) => r.headers.traceparent);
      expect(received).toEqual([`00-${TRACE_ID}-${span!.spanContext().spanId}-01`]);
    } finally {
      await api.close();
      await upZone.stop();
      logs.push(...api.logger.lines);
    }
  });

  it('W9 no span attribute, span event, metric attribute or log line of this suite holds a token, its signature or the client secret', async () => {
    expect(secrets.length).toBeGreaterThan(20);
    const exported = await sdk.everything();
    expect(exported).toContain('keycard.decision');
    const texts = [exported, ...logs];
    expect(secrets.filter((secret) => texts.some((text) => text.includes(secret)))).toEqual([]);
    expect(texts.some((text) => /Bearer |eyJ[\w-]+\.eyJ/.test(text))).toBe(false);
  });
});
