/**
 * Catalogue §W on the gateway doors (`ws`, socket.io), with a real SDK (in-memory span exporter)
 * inside real Nest apps on loopback. A gateway message is decided with no span active (no HTTP
 * instrumentation runs there): the module records it on a `keycard.decision` span of its own,
 * which continues the handshake's W3C `traceparent` when there is one, and the audit record names
 * that span (`traceId`, `spanId`) with or without a `traceparent`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { Agent, KeycardConnections, KeycardModule, RequireScopes } from '../lib/index.js';
import { KEYCARD_ATTRIBUTES as A, KeycardTelemetryModule } from '../lib/telemetry/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';
import { finished, startTestSdk, type TestSdk } from './support/telemetry.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

@WebSocketGateway()
class Orders {
  @RequireScopes('orders:read')
  @SubscribeMessage('whoami')
  whoami(@Agent('clientId') clientId: string) {
    return { event: 'whoami', data: clientId };
  }
}

type Platform = 'ws' | 'socket.io';

/** The audit records among `lines`, parsed. */
const auditRecords = (lines: readonly string[]): Record<string, unknown>[] =>
  lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

/** Sends `whoami` once over a new connection (with `headers`, e.g. `traceparent`, on its handshake); resolves with the first answer. */
async function ask(platform: Platform, port: number, token: string, headers: Record<string, string> = {}): Promise<{ event: string; data: unknown }> {
  if (platform === 'ws') {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { ...headers, authorization: `Bearer ${token}` } });
    return new Promise<{ event: string; data: unknown }>((resolve, reject) => {
      socket.once('message', (raw) => resolve(JSON.parse(String(raw)) as { event: string; data: unknown }));
      socket.once('open', () => socket.send(JSON.stringify({ event: 'whoami', data: {} })));
      socket.once('error', reject);
    }).finally(() => socket.terminate());
  }
  const socket = io(`http://127.0.0.1:${port}`, { auth: { token }, extraHeaders: headers, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise<{ event: string; data: unknown }>((resolve, reject) => {
    socket.onAny((event: string, data: unknown) => resolve({ event, data }));
    socket.once('connect', () => socket.emit('whoami', {}));
    socket.once('connect_error', reject);
  }).finally(() => socket.disconnect());
}

describe('§W decision spans on the gateway doors', () => {
  let sdk: TestSdk;
  let zone: TestZone;
  const secrets: string[] = [];
  const logs: string[] = [];
  /** How many `keycard.decision` spans earlier tests left. */
  let seen = 0;

  beforeAll(async () => {
    sdk = startTestSdk();
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  const issue = (claims: Record<string, unknown>): string => {
    const token = zone.issueToken({ sub: 'user-1', keycard_app_id: 'app-7', ...claims });
    secrets.push(token, token.split('.')[2]!);
    return token;
  };

  async function gateway(platform: Platform, run: (port: number, logger: CapturingLogger) => Promise<void>): Promise<void> {
    const logger = new CapturingLogger();
    seen = finished(sdk.spans, 'keycard.decision').length;
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true }), KeycardTelemetryModule.forRoot()], providers: [Orders] })
    class GatewayModule {}
    const app: INestApplication = await NestFactory.create(GatewayModule, { logger: false, abortOnError: false });
    app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
    await app.listen(0, '127.0.0.1');
    try {
      await run((app.getHttpServer().address() as { port: number }).port, logger);
    } finally {
      await app.close();
      logs.push(...logger.lines);
    }
  }

  /** The `keycard.decision` spans of this test's `whoami` messages, oldest first. */
  const messageSpans = (): ReadableSpan[] => finished(sdk.spans, 'keycard.decision').slice(seen).filter((s) => s.attributes[A.CALL_NAME] === 'ws whoami');
  const messageRecords = (logger: CapturingLogger) => auditRecords(logger.lines).filter((r) => r.route === 'whoami');

  it.each(['ws', 'socket.io'] as const)('W1 %s: a message decided on a connection opened with traceparent is a keycard.decision span in that trace, child of the caller\'s span; the audit record names that span', async (platform) => {
    await gateway(platform, async (port, logger) => {
      const admitted = await ask(platform, port, issue({ client_id: 'cli-1', scope: 'orders:read' }), { traceparent: TRACEPARENT });
      expect(admitted).toEqual({ event: 'whoami', data: 'cli-1' });
      const refused = await ask(platform, port, issue({ client_id: 'cli-2', scope: 'orders:write' }), { traceparent: TRACEPARENT });
      expect(refused.event).toBe('exception');
      expect(refused.data).toMatchObject({ error: 'insufficient_scope', scope: 'orders:read' });
      const spans = messageSpans();
      expect(spans.map((s) => [s.attributes[A.DECISION], s.spanContext().traceId, s.parentSpanContext?.spanId, s.parentSpanContext?.isRemote])).toEqual([
        ['admitted', TRACE_ID, PARENT_ID, true],
        ['refused', TRACE_ID, PARENT_ID, true],
      ]);
      expect(messageRecords(logger).map((r) => [r.type, r.traceId, r.spanId])).toEqual(spans.map((s) => [s.attributes[A.DECISION], TRACE_ID, s.spanContext().spanId]));
    });
  });

  it.each(['ws', 'socket.io'] as const)('W1 %s: without traceparent the message span is a root of its own trace, and the audit record carries its trace and span ids', async (platform) => {
    await gateway(platform, async (port, logger) => {
      const refused = await ask(platform, port, issue({ client_id: 'cli-2', scope: 'orders:write' }));
      expect(refused.data).toMatchObject({ error: 'insufficient_scope' });
      const [span] = messageSpans();
      expect(span?.parentSpanContext).toBeUndefined();
      expect(messageRecords(logger).map((r) => [r.type, r.traceId, r.spanId])).toEqual([['refused', span!.spanContext().traceId, span!.spanContext().spanId]]);
    });
  });

  it('W1 ws: a connection opened without traceparent: the audit record of the opening names its keycard.decision span', async () => {
    await gateway('ws', async (port, logger) => {
      expect(await ask('ws', port, issue({ client_id: 'cli-1', scope: 'orders:read' }))).toEqual({ event: 'whoami', data: 'cli-1' });
      const opening = finished(sdk.spans, 'keycard.decision').slice(seen).filter((s) => s.attributes[A.CALL_NAME] === 'ws connection').at(-1)!;
      expect(auditRecords(logger.lines).filter((r) => r.route === 'connection ws').map((r) => [r.status, r.traceId, r.spanId])).toEqual([
        [101, opening.spanContext().traceId, opening.spanContext().spanId],
      ]);
    });
  });

  it('W1 ws: a connection opened with traceparent: its keycard.decision span is a child of the caller\'s span, and its audit record names it', async () => {
    await gateway('ws', async (port, logger) => {
      expect(await ask('ws', port, issue({ client_id: 'cli-1', scope: 'orders:read' }), { traceparent: TRACEPARENT })).toEqual({ event: 'whoami', data: 'cli-1' });
      const opening = finished(sdk.spans, 'keycard.decision').slice(seen).filter((s) => s.attributes[A.CALL_NAME] === 'ws connection').at(-1)!;
      expect([opening.spanContext().traceId, opening.parentSpanContext?.spanId]).toEqual([TRACE_ID, PARENT_ID]);
      expect(auditRecords(logger.lines).filter((r) => r.route === 'connection ws').map((r) => [r.status, r.traceId, r.spanId])).toEqual([[101, TRACE_ID, opening.spanContext().spanId]]);
    });
  });

  it.each(['ws', 'socket.io'] as const)('W9 %s: hostile trace headers on the handshake (all-zero ids, version ff, the token as traceparent, 12 KB tracestate and baggage holding the token) change no answer; a message span only joins a valid trace; the audit ids are well formed', async (platform) => {
    await gateway(platform, async (port, logger) => {
      const token = issue({ client_id: 'cli-1', scope: 'orders:read' });
      const hostile: Record<string, string>[] = [
        { traceparent: `00-${'0'.repeat(32)}-${PARENT_ID}-01` },
        { traceparent: `00-${TRACE_ID}-${'0'.repeat(16)}-01` },
        { traceparent: `ff-${TRACE_ID}-${PARENT_ID}-01` },
        { traceparent: token },
        { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, tracestate: `k=${token},${'x=y,'.repeat(3000)}`, baggage: `stolen=${token}` },
      ];
      for (const headers of hostile) expect(await ask(platform, port, token, headers)).toEqual({ event: 'whoami', data: 'cli-1' });
      const spans = messageSpans();
      expect(spans.map((s) => s.parentSpanContext?.spanId)).toEqual([undefined, undefined, undefined, undefined, PARENT_ID]);
      for (const span of spans) expect(span.spanContext().traceId).not.toBe('0'.repeat(32));
      for (const record of messageRecords(logger)) {
        expect(record.traceId).toMatch(/^(?!0{32})[\da-f]{32}$/);
        expect(record.spanId).toMatch(/^(?!0{16})[\da-f]{16}$/);
      }
      expect(JSON.stringify(spans.map((s) => [s.attributes, s.events, s.status])).includes(token.split('.')[2]!)).toBe(false);
    });
  });

  it('W9 no span attribute, span event or log line of this suite holds a token or its signature', async () => {
    expect(secrets.length).toBeGreaterThan(5);
    const texts = [await sdk.everything(), ...logs];
    expect(secrets.filter((secret) => texts.some((text) => text.includes(secret)))).toEqual([]);
  });
});
