/**
 * O5: a burst of refused messages on a per-message door costs the same per message however long the
 * burst (a refusal is O(1)), and never stalls the event loop past the row's bound. A socket.io
 * `@SubscribeMessage('write')` and a `ws` one that require `orders:write`, from a connection whose
 * token lacks it: every message is refused in its context's shape.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { KeycardConnections, KeycardModule, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { CapturingLogger } from './support/keycard-app.js';

@WebSocketGateway()
class Writes {
  @RequireScopes('orders:write')
  @SubscribeMessage('write')
  write() {
    return { event: 'written', data: true };
  }
}

type Platform = 'ws' | 'socket.io';

async function start(zone: TestZone, platform: Platform) {
  const logger = new CapturingLogger();
  @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger })], providers: [Writes] })
  class AppModule {}
  const app: INestApplication = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
  app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
  await app.listen(0, '127.0.0.1');
  return { app, logger, port: (app.getHttpServer().address() as { port: number }).port };
}

/** A connection that sends `count` `write` messages at once and resolves with every answer. */
interface Burst {
  send(count: number): Promise<unknown[]>;
  close(): void;
}

/**
 * Sends in slices of 250 between turns of the event loop: the client shares the process with the
 * server, and one synchronous loop of 10 000 sends would be the client's own stall, not the server's.
 */
function sendInSlices(count: number, sendOne: () => void): void {
  let sent = 0;
  const slice = () => {
    for (const end = Math.min(count, sent + 250); sent < end; sent++) sendOne();
    if (sent < count) setImmediate(slice);
  };
  slice();
}

async function socketIoBurst(port: number, token: string): Promise<Burst> {
  const socket: Socket = io(`http://127.0.0.1:${port}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return {
    send: (count) =>
      new Promise((resolve) => {
        const answers: unknown[] = [];
        const listener = (data: unknown) => {
          answers.push(data);
          if (answers.length === count) {
            socket.off('exception', listener);
            resolve(answers);
          }
        };
        socket.on('exception', listener);
        sendInSlices(count, () => socket.emit('write', {}));
      }),
    close: () => socket.disconnect(),
  };
}

async function wsBurst(port: number, token: string): Promise<Burst> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return {
    send: (count) =>
      new Promise((resolve) => {
        const answers: unknown[] = [];
        const listener = (raw: WebSocket.RawData) => {
          answers.push(JSON.parse(String(raw)));
          if (answers.length === count) {
            socket.off('message', listener);
            resolve(answers);
          }
        };
        socket.on('message', listener);
        const message = JSON.stringify({ event: 'write', data: {} });
        sendInSlices(count, () => socket.send(message));
      }),
    close: () => socket.terminate(),
  };
}

describe.each(['socket.io', 'ws'] as const)('O5 a burst of refused messages over %s', (platform) => {
  let zone: TestZone;
  let api: Awaited<ReturnType<typeof start>>;
  let burst: Burst;
  let token: string;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await start(zone, platform);
    token = zone.issueToken({ client_id: 'agent-burst', scope: 'orders:read' });
    burst = await (platform === 'ws' ? wsBurst : socketIoBurst)(api.port, token);
    await burst.send(200); // warm up: the first refusals load the context's error classes
  });
  afterAll(async () => {
    burst?.close();
    await api?.app.close();
    await zone?.stop();
  });

  const timed = async (count: number) => {
    const started = performance.now();
    const answers = await burst.send(count);
    return { ms: performance.now() - started, answers };
  };

  it(`O5 ${platform}: 10 000 messages lacking orders:write are each refused insufficient_scope naming it, the event loop never blocked past the bound, and the cost is linear (time(10 000) / time(1 000) ≤ 12)`, async () => {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const big = await timed(10_000);
    delay.disable();
    expect(big.answers).toHaveLength(10_000);
    const shapes = new Set(big.answers.map((a) => JSON.stringify(platform === 'ws' ? a : { event: 'exception', data: a })));
    expect([...shapes].map((s) => JSON.parse(s) as unknown)).toEqual([
      { event: 'exception', data: { status: 'error', error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope: 'orders:write' } },
    ]);
    expect(delay.max / 1e6).toBeLessThanOrEqual(200);
    // Best of three alternations of the two sizes: a busy machine slows single runs, not the ratio of the best.
    let small = Infinity;
    let large = big.ms;
    for (let i = 0; i < 3; i++) {
      small = Math.min(small, (await timed(1_000)).ms);
      large = Math.min(large, (await timed(10_000)).ms);
    }
    expect(large / small).toBeLessThanOrEqual(12);
    for (const line of api.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  });
});
