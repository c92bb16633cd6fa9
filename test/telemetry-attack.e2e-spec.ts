/**
 * Catalogue §W under attack (issue 23 trial): hostile trace-context headers, tokens in places a
 * client may put them (query string, trace headers, baggage, oversized or non-UTF-8 tokens), an
 * exporter that throws and an SDK shut down while the app runs. With a real SDK (the suites'
 * in-memory exporter, and a second processor whose exporter throws), over Express and Fastify.
 * Each case asserts the answer and challenge, that the audit record's ids are well formed, and that
 * nothing the SDK or the logs hold carries a token (W9).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Query, Resolver } from '@nestjs/graphql';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { propagation, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { Access, Grant, Public, RequireScopes, TokenExchangeError, TokenExchangeService, type AccessContext } from '../lib/index.js';
import { KEYCARD_ATTRIBUTES as A, KeycardTelemetryModule } from '../lib/telemetry/index.js';
import { TestZone } from '../lib/testing/index.js';
import { forged } from './support/contexts.js';
import { R } from './support/forge.js';
import { parseChallenge, send, type HttpAnswer } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';
import { freePort } from './support/free-port.js';
import { startMcpApp } from './support/mcp-app.js';
import { startGraphQLApp } from './support/graphql-app.js';
import { finished, points, secretsToScan, serverSpans, startTestSdk, type TestSdk } from './support/telemetry.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const ZERO_TRACE = '0'.repeat(32);
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
const UP = 'https://upstream.example.com';

@Controller()
class GrantedOrders {
  @Get('granted')
  @RequireScopes('orders:read')
  @Grant(UP, 'up:read')
  granted(@Access() access: AccessContext) {
    return { has: access.has(UP) };
  }
}

/** The audit records an app wrote, parsed. */
function auditRecords(api: RunningApp): Record<string, unknown>[] {
  return api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A public field that takes 300 ms, so a client can hang up while the operation runs. */
@Resolver()
class SlowResolver {
  static completed = 0;
  @Public()
  @Query(() => String)
  async slow(): Promise<string> {
    await sleep(300);
    SlowResolver.completed += 1;
    return 'done';
  }
}

/** POSTs `query` as JSON and destroys the socket after `afterMs`, before the answer. */
function postAndHangUp(url: string, query: string, afterMs: number): Promise<void> {
  const target = new URL(url);
  const req = request({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers: { 'Content-Type': 'application/json' }, agent: false });
  req.on('error', () => undefined);
  req.end(JSON.stringify({ query }));
  return sleep(afterMs).then(() => void req.destroy());
}

describe('§W under attack: trace context and token leaks', () => {
  let sdk: TestSdk;
  let zone: TestZone;
  /** Every token and secret a test used: none may appear in any span, metric or log (W9). */
  const { secrets, logs, remember } = secretsToScan();

  beforeAll(async () => {
    sdk = startTestSdk();
    // As @opentelemetry/sdk-node registers by default (OTEL_PROPAGATORS=tracecontext,baggage).
    propagation.disable();
    propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  async function withApp(adapter: 'express' | 'fastify', telemetry: boolean, run: (api: RunningApp) => Promise<void>): Promise<void> {
    const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, telemetry ? { imports: [KeycardTelemetryModule.forRoot({ metrics: { agentAttribute: true } })], configure: serverSpans } : {});
    try {
      await run(api);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  }

  /** Hostile trace headers, each with a valid token or none: the call is judged as without them. */
  function hostileTraceHeaders(token: string): [string, [string, string][]][] {
    const [header, payload, signature] = token.split('.');
    return [
      ['all-zero trace id', [['traceparent', `00-${ZERO_TRACE}-00f067aa0ba902b7-01`]]],
      ['all-zero parent id', [['traceparent', `00-${TRACE_ID}-0000000000000000-01`]]],
      ['version ff', [['traceparent', `ff-${TRACE_ID}-00f067aa0ba902b7-01`]]],
      ['upper-case hex', [['traceparent', `00-${TRACE_ID.toUpperCase()}-00F067AA0BA902B7-01`]]],
      ['two traceparent lines', [['traceparent', `00-${TRACE_ID}-00f067aa0ba902b7-01`], ['traceparent', `00-${'1'.repeat(32)}-00f067aa0ba902b7-01`]]],
      ['8 KB traceparent', [['traceparent', `00-${TRACE_ID}-00f067aa0ba902b7-01${'a'.repeat(8000)}`]]],
      ['the token as traceparent', [['traceparent', token]]],
      ['the token in the trace id slot', [['traceparent', `00-${header}-${payload}-${signature}`]]],
      ['12 KB tracestate with the token', [['traceparent', `00-${TRACE_ID}-00f067aa0ba902b7-01`], ['tracestate', `k=${token},${'x=y,'.repeat(3000)}`]]],
      ['baggage with the token', [['traceparent', `00-${TRACE_ID}-00f067aa0ba902b7-01`], ['baggage', `token=${token}`]]],
    ];
  }

  function expectWellFormedIds(api: RunningApp): void {
    for (const record of auditRecords(api)) {
      if (record.traceId !== undefined) {
        expect(record.traceId).toMatch(/^[\da-f]{32}$/);
        expect(record.traceId).not.toBe(ZERO_TRACE);
      }
      if (record.spanId !== undefined && record.spanId !== '') expect(record.spanId).toMatch(/^[\da-f]{16}$/);
    }
  }

  const cases = ADAPTERS.flatMap((adapter) => [true, false].map((telemetry) => [adapter, telemetry] as const));

  it.each(cases)('W9 %s (telemetry %s): hostile traceparent, tracestate and baggage on admitted and refused requests: same answers, well-formed ids in the audit record, no token anywhere', async (adapter, telemetry) => {
    await withApp(adapter, telemetry, async (api) => {
      const token = remember(zone.issueToken({ sub: 'user-1', client_id: 'cli-1', keycard_app_id: 'app-7', scope: 'orders:read' }));
      for (const [, headers] of hostileTraceHeaders(token)) {
        const ok = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`], ...headers]);
        expect(ok.status).toBe(200);
        const refused = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${forged(token)}`], ...headers]);
        expectInvalidToken(refused);
        const anonymous = await send(api.url, 'GET', '/orders', headers);
        expect(anonymous.status).toBe(401);
      }
      expect(auditRecords(api)).toHaveLength(30);
      expectWellFormedIds(api);
      // No record follows an invalid traceparent: only the valid TRACE_ID (or a span of our own) may be named.
      const named = new Set(auditRecords(api).map((r) => r.traceId));
      if (!telemetry) expect([...named].filter((id) => id !== undefined && id !== TRACE_ID)).toEqual([]);
      await expectNothingLeaked(api);
    });
  });

  it.each(ADAPTERS)('W9 %s: tokens in the query string, oversized, non-UTF-8 and forged tokens reach no span attribute, status message, metric or audit field', async (adapter) => {
    await withApp(adapter, true, async (api) => {
      const token = remember(zone.issueToken({ sub: 'user-1', client_id: 'cli-1', keycard_app_id: 'app-7', scope: 'orders:read' }));
      const expired = remember(zone.issueToken({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read', iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 300 }));
      const oversized = remember(`${token}${'A'.repeat(9000)}`);
      const latin1 = remember(`${token.slice(0, -4)}\u00ff\u00fe\u00e9x`);
      let res = await send(api.url, 'GET', `/orders?access_token=${token}`, [['Authorization', `Bearer ${token}`]]);
      expect(res.status).toBe(200);
      res = await send(api.url, 'GET', `/orders?access_token=${token}`);
      expect(res.status).toBe(401);
      expect(parseChallenge(res.headers['www-authenticate'])?.params.error).toBeUndefined();
      for (const bad of [expired, forged(token), oversized, latin1, token.split('.').slice(0, 2).join('.')]) {
        res = await send(api.url, 'GET', `/orders?t=${encodeURIComponent(bad)}`, [['Authorization', `Bearer ${bad}`]]);
        expect([400, 401, 431]).toContain(res.status);
        if (res.status !== 431) expect(res.headers['www-authenticate']).toBeDefined();
      }
      for (const span of finished(sdk.spans)) {
        expect(span.status.code).toBe(SpanStatusCode.UNSET);
        expect(span.status.message ?? '').toBe('');
      }
      await expectNothingLeaked(api);
    });
  });

  it('W5 the caller\'s baggage (client-chosen, here holding its token) does not reach the zone with keycard.exchange: the token request carries traceparent only', async () => {
    const SECRET = 'exchange-secret-attack-0123456789';
    secrets.push(SECRET);
    const upZone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc-1', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
    const api = await startApp('express', { zoneUrl: upZone.issuer, resource: R, clientCredentials: { clientId: 'svc-1', clientSecret: SECRET } }, {
      controllers: [GrantedOrders],
      imports: [KeycardTelemetryModule.forRoot()],
      configure: serverSpans,
    });
    try {
      const token = remember(upZone.issueToken({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' }));
      const res = await send(api.url, 'GET', '/granted', [['Authorization', `Bearer ${token}`], ['traceparent', TRACEPARENT], ['baggage', `stolen=${token.split('.')[2]},tenant=evil`]]);
      expect({ status: res.status, json: res.json }).toEqual({ status: 200, json: { has: true } });
      const [span] = finished(sdk.spans, 'keycard.exchange');
      expect(span!.kind).toBe(SpanKind.CLIENT);
      const [request] = upZone.tokenRequests;
      expect(request!.headers.traceparent).toBe(`00-${TRACE_ID}-${span!.spanContext().spanId}-01`);
      expect(request!.headers.baggage).toBeUndefined();
    } finally {
      await api.close();
      await upZone.stop();
      logs.push(...api.logger.lines);
    }
  });

  it('W5 a failed exchange (the zone answers 500 with a body quoting the client secret and the subject token): span status ERROR with no message, error.type the kind, no secret in the span', async () => {
    const SECRET = 'exchange-secret-attack-9876543210';
    secrets.push(SECRET);
    const upZone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc-1', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
    const api = await startApp('express', { zoneUrl: upZone.issuer, resource: R, clientCredentials: { clientId: 'svc-1', clientSecret: SECRET } }, {
      imports: [KeycardTelemetryModule.forRoot()],
    });
    try {
      const exchange = api.app.get(TokenExchangeService);
      const subject = remember(upZone.issueToken({ sub: 'user-1', client_id: 'cli-1', scope: 'orders:read' }));
      upZone.faults.token = { kind: 'status', status: 500, body: `{"error":"server_error","error_description":"${SECRET} ${subject}"}` };
      const failure = await exchange.exchange({ subjectToken: subject, resource: UP, scope: 'up:read' }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(TokenExchangeError);
      const [span] = finished(sdk.spans, 'keycard.exchange').slice(-1);
      expect(span!.status).toEqual({ code: SpanStatusCode.ERROR });
      expect(span!.attributes['error.type']).toBe((failure as TokenExchangeError).kind);
      expect(span!.events).toEqual([]);
    } finally {
      await api.close();
      await upZone.stop();
      logs.push(...api.logger.lines);
    }
  });

  it('W9 MCP: the token as a tool name, as Mcp-Name and in the arguments, a non-string tool name and a batch: no gen_ai.tool.name but a declared tool\'s, no token in any span or log', async () => {
    const port = await freePort();
    const api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, imports: [KeycardTelemetryModule.forRoot({ metrics: { agentAttribute: true } })], configure: serverSpans });
    try {
      const token = remember(zone.issueToken({ aud: `${api.url}/mcp`, sub: 'alice', client_id: 'agent-7', scope: 'mcp:tools' }));
      const post = (body: unknown, name = token) => send(api.url, 'POST', '/mcp', [
        ['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'], ['MCP-Protocol-Version', '2025-06-18'],
        ['Mcp-Method', 'tools/call'], ['Mcp-Name', name], ['Authorization', `Bearer ${token}`],
      ], JSON.stringify(body));
      const bodies = [
        { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: token, arguments: { token } } },
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: ['purge_orders'], arguments: {} } },
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: null },
        [{ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: token, arguments: { token } } }],
      ];
      for (const body of bodies) {
        const res = await post(body);
        expect(res.status).toBeLessThan(500);
        // The answer may quote the tool name back ("Unknown tool: …", the MCP SDK's): the caller's own input, to the caller.
        const span = finished(sdk.spans).at(-1)!;
        expect(span.attributes[A.MCP_TOOL]).toBeUndefined();
        expect(span.attributes[A.CALL_KIND]).toBe('mcp');
      }
      await expectNothingLeaked(api);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  it('W8 a GraphQL operation over HTTP whose client hangs up before the answer is counted once, with its refusal, and has its audit record (aborted: true)', async () => {
    const api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { imports: [KeycardTelemetryModule.forRoot()], providers: [SlowResolver] });
    try {
      const refusals = async () => points(await sdk.collect(), 'keycard.decisions').find((p) => p.attributes[A.CALL_KIND] === 'graphql' && p.attributes[A.REASON] === 'no_credentials')?.value ?? 0;
      const before = await refusals();
      const done = SlowResolver.completed;
      await postAndHangUp(api.url, '{ whoami slow }', 100);
      for (let i = 0; i < 100 && SlowResolver.completed === done; i++) await sleep(20);
      await sleep(50);
      expect(await refusals()).toBe(before + 1);
      const records = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records).toEqual([expect.objectContaining({ route: 'graphql query anonymous', reason: 'no_credentials', refused: ['Query.whoami'], aborted: true })]);
    } finally {
      await api.close();
      logs.push(...api.logger.lines);
    }
  });

  it('KeycardTelemetryModule imported without KeycardModule fails the bootstrap with a message that says how to wire it', async () => {
    @Module({ imports: [KeycardTelemetryModule.forRoot()] })
    class OnlyTelemetry {}
    const failure = await NestFactory.create(OnlyTelemetry, { logger: false, abortOnError: false }).then(
      async (app) => {
        await app.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(String((failure as Error | undefined)?.message)).toMatch(/KeycardTelemetryModule needs KeycardModule\.forRoot\(\)/);
  });

  function expectInvalidToken(res: HttpAnswer): void {
    expect(res.status).toBe(401);
    expect(parseChallenge(res.headers['www-authenticate'])?.params.error).toBe('invalid_token');
  }

  async function expectNothingLeaked(api: Pick<RunningApp, 'logger'>): Promise<void> {
    const everything = await sdk.everything();
    for (const secret of secrets) {
      expect(everything.includes(secret)).toBe(false);
      expect(api.logger.lines.some((l) => l.includes(secret))).toBe(false);
    }
    expect(everything.includes(A.USER)).toBe(true); // the scan saw the spans
  }
});
