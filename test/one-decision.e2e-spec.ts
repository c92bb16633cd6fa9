/**
 * O23: one requirement (`orders:read`) served on several doors, each called with no token, a forged
 * token, an expired token, a valid token without the scope and one with it, gives the same reason
 * in every door's decision event and audit record, and names the same `scope` in every refusal
 * shape. Doors with a handshake (ws, socket.io) refuse a missing, forged or expired token when the
 * connection opens (their connection audit record), so per message they are judged for scopes and
 * for a token that expired while the connection was open.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication, type OnModuleInit, Injectable } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import {
  Agent, DecisionEvents, KeycardConnections, KeycardModule, RequireScopes, type AgentContext, type DecisionEvent,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { forged } from './support/contexts.js';
import { R } from './support/forge.js';
import { postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { parseChallenge, send } from './support/http.js';
import { askOverSocketIo, askOverWs } from './support/gateway-clients.js';
import { CapturingLogger, startApp } from './support/keycard-app.js';

/** Every decision event of an app, as a test reads them. */
@Injectable()
class Decisions implements OnModuleInit {
  readonly events: DecisionEvent[] = [];
  constructor(private readonly source: DecisionEvents) {}
  onModuleInit(): void {
    this.source.subscribe((event) => this.events.push(event));
  }
  take(): DecisionEvent[] {
    return this.events.splice(0);
  }
}

const REASONS = ['no_credentials', 'invalid_token', 'token_expired', 'insufficient_scope', 'admitted'];
const audits = (lines: string[]) => lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
const outcomeOf = (event: DecisionEvent): string => (event.type === 'admitted' ? 'admitted' : String(event.reason));

describe('O23 one decision for every door', () => {
  let zone: TestZone;
  const tokens = () => {
    const now = Math.floor(Date.now() / 1000);
    const valid = zone.issueToken({ client_id: 'agent-o23', sub: 'user-1', scope: 'orders:read' });
    return {
      none: undefined,
      forged: forged(valid),
      expired: zone.issueToken({ client_id: 'agent-o23', scope: 'orders:read', iat: now - 600, exp: now - 300 }),
      lacking: zone.issueToken({ client_id: 'agent-o23', scope: 'orders:write' }),
      valid,
    };
  };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  it('O23 HTTP (Express, Fastify) and GraphQL over HTTP (Apollo, Mercurius): the same reasons in events and audit records, the same scope in every refusal', async () => {
    const seen: Record<string, { events: string[]; audit: unknown[]; scopes: unknown[] }> = {};
    for (const adapter of ['express', 'fastify'] as const) {
      const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true, clockToleranceSeconds: 0 }, { providers: [Decisions] });
      try {
        const decisions = api.app.get(Decisions);
        const scopes: unknown[] = [];
        for (const token of Object.values(tokens())) {
          const answer = await send(api.url, 'GET', '/orders', token === undefined ? [] : [['Authorization', `Bearer ${token}`]]);
          if (answer.status >= 400) scopes.push(parseChallenge(answer.headers['www-authenticate'])?.params.scope);
        }
        seen[`http ${adapter}`] = { events: decisions.take().map(outcomeOf), audit: audits(api.logger.lines).map((a) => a.reason ?? 'admitted'), scopes };
      } finally {
        await api.close();
      }
    }
    for (const server of ['apollo', 'mercurius'] as const) {
      const api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, auditLog: true, clockToleranceSeconds: 0 }, { providers: [Decisions] });
      try {
        const decisions = api.app.get(Decisions);
        const scopes: unknown[] = [];
        for (const token of Object.values(tokens())) {
          const answer = await postGraphQL(api.url, '{ whoami }', token);
          const error = answer.body.errors?.[0] as { extensions?: { scope?: unknown } } | undefined;
          if (error !== undefined) scopes.push(error.extensions?.scope);
        }
        seen[`graphql ${server}`] = { events: decisions.take().map(outcomeOf), audit: audits(api.logger.lines).map((a) => a.reason ?? 'admitted'), scopes };
      } finally {
        await api.close();
      }
    }
    const expected = { events: REASONS, audit: ['no_credentials', 'signature_invalid', 'expired', 'insufficient_scope', 'admitted'], scopes: Array(4).fill('orders:read') };
    expect(seen).toEqual({ 'http express': expected, 'http fastify': expected, 'graphql apollo': expected, 'graphql mercurius': expected });
  });

  @WebSocketGateway()
  class Orders {
    @RequireScopes('orders:read')
    @SubscribeMessage('whoami')
    whoami(@Agent() agent: AgentContext) {
      return { event: 'whoami', data: agent.clientId };
    }
  }

  async function gatewayApp(platform: 'ws' | 'socket.io') {
    const logger = new CapturingLogger();
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true, clockToleranceSeconds: 0 })], providers: [Orders, Decisions] })
    class AppModule {}
    const app: INestApplication = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
    app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
    await app.listen(0, '127.0.0.1');
    return { app, logger, port: (app.getHttpServer().address() as { port: number }).port };
  }

  it.each(['ws', 'socket.io'] as const)('O23 %s: per message, a token lacking the scope → insufficient_scope naming orders:read, with it → admitted; at the handshake a forged or expired token → invalid_token (signature_invalid / expired in the connection record)', async (platform) => {
    const { app, logger, port } = await gatewayApp(platform);
    const ask = platform === 'ws' ? askOverWs : askOverSocketIo;
    try {
      const decisions = app.get(Decisions);
      const all = tokens();
      const lacking = await ask(port, all.lacking, 'whoami');
      const admitted = await ask(port, all.valid, 'whoami');
      expect(lacking).toEqual({ event: 'exception', data: expect.objectContaining({ error: 'insufficient_scope', scope: 'orders:read' }) });
      expect(admitted).toEqual({ event: 'whoami', data: 'agent-o23' });
      // Messages; the connections' own decisions (as they open, no ExecutionContext) name their carrier.
      expect(decisions.take().filter((e) => e.call.carrier === undefined).map(outcomeOf)).toEqual(['insufficient_scope', 'admitted']);
      for (const token of [all.forged, all.expired]) await expect(ask(port, token, 'whoami')).rejects.toBeDefined();
      expect(decisions.take().map((e) => [e.call.carrier, outcomeOf(e)])).toEqual([[platform, 'invalid_token'], [platform, 'token_expired']]);
      const records = audits(logger.lines);
      expect(records.filter((a) => !String(a.route).startsWith('connection')).map((a) => a.reason ?? 'admitted')).toEqual(['insufficient_scope', 'admitted']);
      expect(records.filter((a) => String(a.route).startsWith('connection')).slice(-2).map((a) => [a.status, a.reason])).toEqual([[401, 'signature_invalid'], [401, 'expired']]);
      for (const token of [all.forged, all.expired, all.lacking, all.valid]) {
        for (const line of logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
      }
    } finally {
      await app.close();
    }
  });
});
