/**
 * A TokenValidator runs at WebSocket handshakes too (README: "each runs on every call"): a
 * connection whose token a validator refuses is refused like any invalid token, and receives
 * nothing the server pushes (rooms joined in handleConnection).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { ConnectedSocket, SubscribeMessage, WebSocketGateway, WebSocketServer, type OnGatewayConnection } from '@nestjs/websockets';
import { setTimeout as delay } from 'node:timers/promises';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { InvalidTokenException, KEYCARD_TOKEN_VALIDATORS, KeycardConnections, KeycardModule, RequireScopes, type AgentContext, type TokenValidator } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';

class DenyList implements TokenValidator {
  readonly denied = new Set<string>();
  validate(agent: AgentContext): void {
    if (this.denied.has(agent.subject)) throw new InvalidTokenException('claim_invalid');
  }
}
const denyList = new DenyList();
denyList.denied.add('mallory');


function gateway() {
  @WebSocketGateway()
  class Feed implements OnGatewayConnection {
    @WebSocketServer() server!: { to?(room: string): { emit(e: string, d: unknown): unknown }; clients?: Set<WebSocket> };
    handleConnection(client: { join?(room: string): unknown }) {
      client.join?.('feed'); // a common pattern: every connected client gets the feed
    }
    push(n: number) {
      if (this.server.clients instanceof Set) for (const c of this.server.clients) c.send(JSON.stringify({ event: 'item', data: n }));
      else this.server.to!('feed').emit('item', n);
    }
    @SubscribeMessage('read')
    @RequireScopes('orders:read')
    read(@ConnectedSocket() _c: unknown) {
      return { event: 'data', data: 'secret' };
    }
  }
  return Feed;
}

async function start(zone: TestZone, platform: 'ws' | 'socket.io') {
  const logger = new CapturingLogger();
  const Feed = gateway();
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: true })],
    providers: [Feed, { provide: KEYCARD_TOKEN_VALIDATORS, useValue: [denyList] }],
  })
  class M {}
  const app: INestApplication = await NestFactory.create(M, { logger: false, abortOnError: false });
  const k = app.get(KeycardConnections);
  app.useWebSocketAdapter(k.guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
  await app.listen(0, '127.0.0.1');
  const port = (app.getHttpServer().address() as { port: number }).port;
  return { app, port, logger, feed: app.get(Feed) };
}

describe('TokenValidator at the WebSocket handshake', () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  it('socket.io: a connection whose token a validator refuses is refused at connect (no room items)', async () => {
    const { app, port, logger, feed } = await start(zone, 'socket.io');
    const token = zone.issueToken({ client_id: 'agent-x', sub: 'mallory', scope: 'orders:read' });
    const socket = io(`http://127.0.0.1:${port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    const seen: string[] = [];
    socket.onAny((event: string, data: unknown) => seen.push(`${event}:${JSON.stringify(data)}`));
    const opened = await new Promise<string>((resolve) => {
      socket.once('connect', () => resolve('connect'));
      socket.once('connect_error', (e) => resolve(`connect_error:${e.message}`));
      setTimeout(() => resolve('timeout'), 3000);
    });
    for (let i = 0; i < 3; i++) {
      feed.push(i);
      await delay(50);
    }
    if (socket.connected) socket.emit('read', {});
    await delay(200);
    socket.disconnect();
    await app.close();
    const audit = logger.lines.filter((l) => l.includes('keycard.audit'));
    // Expected: the handshake refused like any call the validator refuses (401 invalid_token).
    expect({ opened, seen, audit }).toEqual({ opened: 'connect_error:invalid_token', seen: [], audit: expect.anything() });
  });

  it('ws: a connection whose token a validator refuses gets the handshake 401 (no pushed items)', async () => {
    const { app, port, feed } = await start(zone, 'ws');
    const token = zone.issueToken({ client_id: 'agent-x', sub: 'mallory', scope: 'orders:read' });
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
    const seen: string[] = [];
    ws.on('message', (m) => seen.push(String(m)));
    const opened = await new Promise<string>((resolve) => {
      ws.once('open', () => resolve('open'));
      ws.once('unexpected-response', (_req, res) => resolve(`http ${res.statusCode}`));
      ws.once('error', (e) => resolve(`error ${e.message}`));
    });
    for (let i = 0; i < 3; i++) {
      feed.push(i);
      await delay(50);
    }
    ws.terminate();
    await app.close();
    expect({ opened, seen }).toEqual({ opened: 'http 401', seen: [] });
  });
});
