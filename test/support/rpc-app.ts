import { credentials, loadPackageDefinition, Metadata, type Client, type ClientDuplexStream, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { INestApplication } from '@nestjs/common';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';

/** The Orders service of the suites' gRPC microservices. */
const ORDERS_PROTO = fileURLToPath(new URL('./orders.proto', import.meta.url));

/**
 * Makes `app` a hybrid app on loopback: its gRPC microservice (package `orders` of `protoPath`) and
 * a TCP one, both with the app's global guards (`inheritAppConfig`), started with its HTTP server.
 * Returns the gRPC address and a TCP client (closed by the caller). If starting fails, closes the
 * app before throwing.
 */
export async function listenHybrid(app: INestApplication, protoPath: string): Promise<{ grpcUrl: string; tcp: ClientProxy }> {
  const grpcUrl = `127.0.0.1:${await freePort()}`;
  const tcpPort = await freePort();
  app.connectMicroservice({ transport: Transport.GRPC, options: { package: 'orders', protoPath, url: grpcUrl } }, { inheritAppConfig: true });
  app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }, { inheritAppConfig: true });
  try {
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    // What did start (a microservice, the HTTP server) would keep Jest from exiting: the suite
    // would hang after its failure instead of ending with it.
    await app.close().catch(() => undefined);
    throw error;
  }
  return { grpcUrl, tcp: ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }) };
}

/** A client's call deadline, so a call the server never ends fails (DEADLINE_EXCEEDED) instead of hanging the suite. */
const CLIENT_DEADLINE_MS = 5000;

/**
 * Calls a duplex method of the Orders service (`Watch` unless told: a `@GrpcStreamCall`; `Follow`
 * is a `@GrpcStreamMethod`) with `entries` as metadata, writes one request (`w-1`) and ends;
 * resolves with the replies, the error status, if any, and the trailing metadata.
 */
export function watchOnce(
  client: Client,
  entries: readonly [string, string][],
  method: 'Watch' | 'Follow' = 'Watch',
): Promise<{ error?: ServiceError; replies: unknown[] }> {
  return new Promise((done) => {
    const metadata = new Metadata();
    for (const [name, value] of entries) metadata.add(name, value);
    const open = (client as unknown as Record<string, (metadata: Metadata, options: object) => ClientDuplexStream<object, unknown>>)[method]!;
    const stream = open.call(client, metadata, { deadline: Date.now() + CLIENT_DEADLINE_MS });
    const replies: unknown[] = [];
    stream.on('data', (reply) => replies.push(reply));
    stream.on('error', (error: ServiceError) => done({ error, replies }));
    stream.on('end', () => done({ replies }));
    stream.write({ id: 'w-1' });
    stream.end();
  });
}

type Unary = (request: object, metadata: Metadata, options: { deadline: number }, callback: (error: ServiceError | null, reply?: { id?: string; by?: string }) => void) => void;

/**
 * One unary `Orders.Find` (`{ id: 'o-1' }`) to `url` with `token` as its `authorization` metadata
 * (`Bearer`), within the client deadline; resolves with the error status or the reply. The client
 * is closed afterwards.
 */
export async function findOrder(url: string, token: string): Promise<{ error: ServiceError | null; reply?: { id?: string; by?: string } }> {
  const Orders = (loadPackageDefinition(loadSync(ORDERS_PROTO)).orders as { Orders: ServiceClientConstructor }).Orders;
  const client = new Orders(url, credentials.createInsecure()) as unknown as Client & { Find: Unary };
  const metadata = new Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  try {
    return await new Promise((resolve) => client.Find({ id: 'o-1' }, metadata, { deadline: Date.now() + CLIENT_DEADLINE_MS }, (error, reply) => resolve({ error, reply })));
  } finally {
    client.close();
  }
}
