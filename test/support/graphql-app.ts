import { Module, type INestApplication, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { Args, Field, GraphQLModule, Mutation, ObjectType, Query, Resolver, Subscription } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import {
  Agent, KEYCARD_CLOCK, KeycardConnections, KeycardModule, Public, RequireScopes,
  type AgentContext, type Clock, type GraphQLWsHooks, type KeycardModuleOptions, type MercuriusSubscriptionHooks,
} from '../../lib/index.js';
import { CapturingLogger } from './keycard-app.js';
import { parseChallenge } from './http.js';

@ObjectType()
class Order {
  @Field(() => String)
  id!: string;
  @Field(() => String)
  by!: string;
}

/** An endless event stream, one event every 50 ms. */
async function* every50ms<T>(event: (n: number) => T): AsyncGenerator<T> {
  for (let n = 0; ; n++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    yield event(n);
  }
}

/** One resolver per catalogue case: undecorated (N1), public (N2), scoped with `@Agent()` (N3, Q16), a subscription (N5). */
@Resolver()
export class OrdersResolver {
  @Query(() => [Order])
  orders(@Agent('clientId') clientId: string): Order[] {
    return [{ id: 'o-1', by: clientId }];
  }

  @Public()
  @Query(() => String)
  health(): string {
    return 'ok';
  }

  @RequireScopes('orders:read')
  @Query(() => String, { nullable: true })
  whoami(@Agent() agent: AgentContext): string {
    return `${agent.clientId}/${agent.subject}`;
  }

  /** A second scoped query needing other scopes than `whoami` (Q16: each field's error names its own). */
  @RequireScopes('orders:read', 'ledger:read')
  @Query(() => String, { nullable: true })
  ledger(@Agent('clientId') clientId: string): string {
    return `ledger of ${clientId}`;
  }

  @RequireScopes('orders:write')
  @Mutation(() => Order)
  placeOrder(@Args('id', { type: () => String }) id: string, @Agent('clientId') clientId: string): Order {
    return { id, by: clientId };
  }

  @RequireScopes('orders:read')
  @Subscription(() => String)
  ticks(): AsyncGenerator<{ ticks: string }> {
    return every50ms((n) => ({ ticks: `tick-${n}` }));
  }

  @Public()
  @Subscription(() => String)
  publicTicks(): AsyncGenerator<{ publicTicks: string }> {
    return every50ms((n) => ({ publicTicks: `p-${n}` }));
  }
}

export type GraphQLServer = 'apollo' | 'mercurius';

export interface RunningGraphQLApp {
  app: INestApplication;
  url: string;
  wsUrl: string;
  logger: CapturingLogger;
  clock: { offsetMs: number };
  close(): Promise<void>;
}

/**
 * A real Nest GraphQL app on loopback: Apollo on Express (with graphql-ws subscriptions verified by
 * `KeycardConnections.graphqlWs()`), or Mercurius on Fastify (subscriptions on request, see `extra`).
 */
export async function startGraphQLApp(
  server: GraphQLServer,
  options: Omit<KeycardModuleOptions, 'logger'>,
  extra: {
    imports?: unknown[];
    providers?: Provider[];
    /**
     * The arguments of `KeycardConnections.graphqlWs()` (Apollo only): the app's hooks and Keycard's
     * options, or `'unguarded'` for Apollo's own graphql-ws server (`'graphql-ws': true`, no Keycard hooks).
     */
    graphqlWs?: 'unguarded' | [hooks?: GraphQLWsHooks, options?: { allowAnonymous?: boolean }];
    /**
     * Mercurius subscriptions: the arguments of `KeycardConnections.mercuriusSubscription()`, or
     * `'unguarded'` for Mercurius's own (`subscription: true`, no Keycard hook). None by default.
     */
    mercuriusSubscription?: 'unguarded' | [subscription?: MercuriusSubscriptionHooks, options?: { allowAnonymous?: boolean }];
    /** More `GraphQLModule` options for either driver (e.g. `fieldResolverEnhancers`). */
    graphql?: Record<string, unknown>;
    /** Shapes the app before it listens (middleware). */
    configure?: (app: INestApplication) => void;
  } = {},
): Promise<RunningGraphQLApp> {
  const logger = new CapturingLogger();
  const graphql =
    server === 'apollo'
      ? GraphQLModule.forRootAsync<ApolloDriverConfig>({
          driver: ApolloDriver,
          inject: [KeycardConnections],
          useFactory: (keycard: KeycardConnections) => ({
            autoSchemaFile: true,
            graphiql: false,
            // As outside production: Apollo then adds `extensions.stacktrace` to every error (N10).
            includeStacktraceInErrorResponses: true,
            allowBatchedHttpRequests: true, // array bodies: several operations, one HTTP response (Q16)
            subscriptions: { 'graphql-ws': extra.graphqlWs === 'unguarded' ? true : keycard.graphqlWs(...(extra.graphqlWs ?? [])) },
            ...extra.graphql,
          }),
        })
      : GraphQLModule.forRootAsync<MercuriusDriverConfig>({
          driver: MercuriusDriver,
          inject: [KeycardConnections],
          useFactory: (keycard: KeycardConnections) => ({
            autoSchemaFile: true,
            graphiql: false,
            allowBatchedQueries: true,
            ...(extra.mercuriusSubscription === undefined
              ? {}
              : { subscription: extra.mercuriusSubscription === 'unguarded' ? true : keycard.mercuriusSubscription(...extra.mercuriusSubscription) }),
            ...extra.graphql,
          }),
        });
  @Module({
    imports: [KeycardModule.forRoot({ ...options, logger }), graphql, ...((extra.imports ?? []) as never[])],
    providers: [OrdersResolver, ...(extra.providers ?? [])],
  })
  class GraphQLAppModule {}
  const app = await NestFactory.create(GraphQLAppModule, server === 'apollo' ? new ExpressAdapter() : new FastifyAdapter(), {
    logger: false,
    abortOnError: false,
  });
  extra.configure?.(app);
  const clock = { offsetMs: 0 };
  app.get<Clock>(KEYCARD_CLOCK).now = () => Date.now() + clock.offsetMs;
  // A bootstrap that fails (a rule the module refuses) leaves nothing listening or open.
  await app.listen(0, '127.0.0.1').catch(async (error: unknown) => {
    await app.close().catch(() => undefined);
    throw error;
  });
  const { port } = app.getHttpServer().address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${port}/graphql`,
    wsUrl: `ws://127.0.0.1:${port}/graphql`,
    logger,
    clock,
    close: () => app.close(),
  };
}

/** Apollo on Express and Mercurius on Fastify, for `describe.each`. */
export const GRAPHQL_SERVERS: [string, GraphQLServer][] = [
  ['Apollo on Express', 'apollo'],
  ['Mercurius on Fastify', 'mercurius'],
];

/** What a client received for a GraphQL operation posted over HTTP. */
export interface GraphQLAnswer {
  status: number;
  challenge: ReturnType<typeof parseChallenge>;
  text: string;
  body: { data?: Record<string, unknown> | null; errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[] };
}

/** Posts `query` to `url` as a JSON body, with `token` as its bearer token when there is one. */
export async function postGraphQL(url: string, query: string, token?: string): Promise<GraphQLAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query }),
  });
  const text = await res.text();
  return { status: res.status, challenge: parseChallenge(res.headers.get('www-authenticate') ?? undefined), text, body: JSON.parse(text) as GraphQLAnswer['body'] };
}

/**
 * The first result of `query` (a query or a subscription) sent over graphql-ws to `wsUrl` with the
 * real `graphql-ws` client; the client is disposed afterwards.
 * @throws what the client reports (a refused or closed connection) before any result.
 */
export async function firstGraphQLWsResult(wsUrl: string, connectionParams: Record<string, unknown>, query: string): Promise<GraphQLAnswer['body']> {
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams, retryAttempts: 0, lazy: true });
  try {
    return await new Promise<GraphQLAnswer['body']>((resolve, reject) => {
      const stop = client.subscribe<Record<string, unknown>>({ query }, {
        next: (value) => {
          stop();
          resolve(value as GraphQLAnswer['body']);
        },
        error: (error: unknown) => reject(error instanceof Error ? error : new Error(`graphql-ws: ${JSON.stringify(error)}`)),
        complete: () => reject(new Error('graphql-ws: completed without a result')),
      });
    });
  } finally {
    await client.dispose();
  }
}

/**
 * A lazy `graphql-ws` client over `ws` (or `url.webSocketImpl`, e.g. one sending headers with its
 * upgrade) that never retries and reports how its socket closed.
 */
export function graphqlWsClient(
  url: string | { url: string; webSocketImpl: unknown },
  connectionParams: Record<string, unknown> | undefined,
  closed: (close: { code: number; reason: string }) => void,
): Client {
  return createClient({
    url: typeof url === 'string' ? url : url.url,
    webSocketImpl: typeof url === 'string' ? WebSocket : url.webSocketImpl,
    connectionParams,
    retryAttempts: 0,
    lazy: true,
    on: {
      closed: (event) => {
        const { code, reason } = event as { code: number; reason: string };
        closed({ code, reason: String(reason) });
      },
    },
  });
}

/**
 * A raw `ws` client speaking `graphql-transport-ws` (so a test sends exactly the frames it means),
 * once its `connection_init` carrying `token` is acknowledged; rejects on any other first answer.
 */
export async function acknowledgedGraphQLWs(url: string, token: string): Promise<WebSocket> {
  const socket = new WebSocket(url, 'graphql-transport-ws');
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } })));
    socket.once('message', (raw) => ((JSON.parse(String(raw)) as { type: string }).type === 'connection_ack' ? resolve() : reject(new Error(String(raw)))));
    socket.once('error', reject);
  });
  return socket;
}
