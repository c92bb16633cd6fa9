/**
 * O5 over socket.io's long-polling transport: one HTTP POST carries a payload of many packets,
 * which engine.io decodes and emits back to back. Pacing covers the WebSocket transport; this
 * checks that a polling client cannot have more than a bounded batch handled per turn either.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { io } from 'socket.io-client';
import { KeycardConnections, KeycardModule, Public } from '../lib/index.js';
import { MESSAGES_PER_TURN } from '../lib/contexts/message-pacing.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { TurnCounter } from './support/turn-counter.js';
import { CapturingLogger } from './support/keycard-app.js';

const turns = new TurnCounter();

@WebSocketGateway()
class Reads {
  @Public()
  @SubscribeMessage('read')
  read() {
    turns.note();
    return true;
  }
}

describe('O5 socket.io long-polling', () => {
  let zone: TestZone;
  let app: INestApplication;
  let base: string;
  let token: string;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    token = zone.issueToken({ client_id: 'agent-poll', scope: 'orders:read' });
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger })], providers: [Reads] })
    class AppModule {}
    app = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
    app.useWebSocketAdapter(app.get(KeycardConnections).guard(new IoAdapter(app)));
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/socket.io/?EIO=4&transport=polling`;
    turns.start();
  });
  afterAll(async () => {
    turns.stop();
    await app?.close();
    await zone?.stop();
  });

  it('O5 socket.io polling: two POSTs of 5 000 packets each are handled at most a bounded batch per turn of the event loop, every message answered in order', async () => {
    const open = await (await fetch(base)).text();
    const sid = (JSON.parse(open.slice(1)) as { sid: string }).sid;
    const url = `${base}&sid=${sid}`;
    const post = (body: string) => fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8' } });
    expect((await post(`40${JSON.stringify({ token })}`)).status).toBe(200);
    await (await fetch(url)).text(); // the CONNECT answer
    const count = 10_000;
    const payload = (from: number) => Array.from({ length: count / 2 }, (_, i) => `42${from + i}["read",{}]`).join('\x1e');
    // Two payloads back to back: the second POST waits, unread, while the first's messages are handed on.
    expect((await post(payload(0))).status).toBe(200);
    expect((await post(payload(count / 2))).status).toBe(200);
    let acks = 0;
    let last = -1;
    let ordered = true;
    while (acks < count) {
      const body = await (await fetch(url)).text();
      for (const packet of body.split('\x1e')) {
        const ack = /^43(\d+)/.exec(packet);
        if (ack === null) continue;
        if (Number(ack[1]) !== last + 1) ordered = false;
        last = Number(ack[1]);
        acks++;
      }
    }
    expect(ordered).toBe(true);
    expect(turns.most()).toBeLessThanOrEqual(2 * MESSAGES_PER_TURN);
    for (const line of logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);
  it.each(['polling', 'polling then websocket'])('O5 socket.io client over %s: a burst of 10 000 acknowledged events sent at once is answered whole and in order (held POSTs and the upgrade never lose or reorder one)', async (over) => {
    const transports = over === 'polling' ? ['polling'] : ['polling', 'websocket'];
    const socket = io(base.slice(0, base.indexOf('/socket.io')), { auth: { token }, transports, reconnection: false, forceNew: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('connect_error', reject);
      });
      const count = 10_000;
      const answered: number[] = [];
      await new Promise<void>((resolve) => {
        for (let i = 0; i < count; i++) {
          socket.emit('read', {}, () => {
            answered.push(i);
            if (answered.length === count) resolve();
          });
        }
      });
      expect(answered).toEqual([...Array(count).keys()]);
    } finally {
      socket.disconnect();
    }
  }, 120_000);
});
