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
import { SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { fileURLToPath } from 'node:url';
import { Agent, DecisionEvents, KeycardModule, RequireScopes, type DecisionEvent } from '../lib/index.js';
import { KEYCARD_ATTRIBUTES as A, KeycardTelemetry, KeycardTelemetryModule, OTHER_AGENT } from '../lib/telemetry/index.js';
import { TestZone } from '../lib/testing/index.js';
import { forged } from './support/contexts.js';
import { R } from './support/forge.js';
import { postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { parseChallenge, send } from './support/http.js';
import { ADAPTERS, CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';
import { freePort } from './support/free-port.js';
import { startMcpApp } from './support/mcp-app.js';
import { listenHybrid } from './support/rpc-app.js';
import { finished, points, serverSpans, startTestSdk, type TestSdk } from './support/telemetry.js';

const PROTO = fileURLToPath(new URL('./support/orders.proto', import.meta.url));
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe('§W decision events in OpenTelemetry', () => {
  let sdk: TestSdk;
  let zone: TestZone;
  /** Every token and secret a test used: none may appear in any span, metric or log (W9). */
  const secrets: string[] = [];
  const logs: string[] = [];
  const remember = (token: string) => {
    secrets.push(token, token.split('.')[2]!);
    return token;
  };
  const issue = (claims: Record<string, unknown>) => remember(zone.issueToken({ keycard_app_id: 'app-7', ...claims }));

  beforeAll(async () => {
    sdk = startTestSdk();
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  async function withHttpApp(adapter: 'express' | 'fastify', run: (api: RunningApp) => Promise<void>): Promise<void> {
    const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, { imports: [KeycardTelemetryModule.forRoot()], configure: serverSpans });
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
});
