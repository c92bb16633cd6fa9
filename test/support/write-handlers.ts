import { Module, type INestApplication, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Int, Resolver, Subscription } from '@nestjs/graphql';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { KeycardConnections, KeycardModule, Public, RequireScopes } from '../../lib/index.js';
import type { TestZone } from '../../lib/testing/index.js';
import { R } from './forge.js';
import { CapturingLogger } from './keycard-app.js';

/** A gateway whose `write` requires `orders:write` (`admin`: `orders:admin`) and whose `read` serves anyone (catalogue O5). */
@WebSocketGateway()
export class Writes {
  @RequireScopes('orders:write')
  @SubscribeMessage('write')
  write() {
    return { event: 'written', data: true };
  }

  @RequireScopes('orders:admin')
  @SubscribeMessage('admin')
  admin() {
    return { event: 'administered', data: true };
  }

  /** The reference: a message served to anyone (what the transport and Nest cost per message). */
  @Public()
  @SubscribeMessage('read')
  read() {
    return { event: 'served', data: true };
  }
}

/** The same over GraphQL subscriptions: `orderWrites` requires `orders:write`, `publicWrites` serves anyone. */
@Resolver()
export class WriteSubscriptions {
  @RequireScopes('orders:write')
  @Subscription(() => Int)
  async *orderWrites(): AsyncGenerator<{ orderWrites: number }> {
    yield { orderWrites: 1 };
  }

  /** The reference: the same subscription served to anyone (what graphql-ws itself costs per message). */
  @Public()
  @Subscription(() => Int)
  async *publicWrites(): AsyncGenerator<{ publicWrites: number }> {
    yield { publicWrites: 1 };
  }
}

/** A real Nest app on loopback serving {@link Writes} on a `ws` or socket.io gateway wrapped by `KeycardConnections.guard()`. */
export async function startWritesGateway(zone: TestZone, platform: 'ws' | 'socket.io', extra: { providers?: Provider[]; auditLog?: boolean } = {}) {
  const logger = new CapturingLogger();
  @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger, auditLog: extra.auditLog })], providers: [Writes, ...(extra.providers ?? [])] })
  class AppModule {}
  const app: INestApplication = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
  app.useWebSocketAdapter(app.get(KeycardConnections).guard(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)));
  await app.listen(0, '127.0.0.1');
  return { app, logger, port: (app.getHttpServer().address() as { port: number }).port };
}
