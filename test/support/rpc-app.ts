import type { INestApplication } from '@nestjs/common';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { freePort } from './free-port.js';

/**
 * Makes `app` a hybrid app on loopback: its gRPC microservice (package `orders` of `protoPath`) and
 * a TCP one, both with the app's global guards (`inheritAppConfig`), started with its HTTP server.
 * Returns the gRPC address and a TCP client (closed by the caller).
 */
export async function listenHybrid(app: INestApplication, protoPath: string): Promise<{ grpcUrl: string; tcp: ClientProxy }> {
  const grpcUrl = `127.0.0.1:${await freePort()}`;
  const tcpPort = await freePort();
  app.connectMicroservice({ transport: Transport.GRPC, options: { package: 'orders', protoPath, url: grpcUrl } }, { inheritAppConfig: true });
  app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }, { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
  return { grpcUrl, tcp: ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }) };
}
