/**
 * Trial (attack) of the recent stream work: a failed token exchange coming out of an `@Sse()`
 * Observable or a GraphQL subscription's event iterator (`StreamExchangeFailures`, `KeycardStreams`),
 * Mercurius forgetting such subscriptions, GraphQL status/challenge agreement, and the apps of one
 * process sharing handler classes. Real Nest apps over loopback, the real TestZone, real clients.
 * Tests whose name starts "held:" are attacks that held; the others were findings, fixed since
 * (each failed before its fix). Left out, with the closing note of 2026-12-08: two apps created
 * before either listens (fixed since for `@Sse()` routes and subscriptions, and still documented for
 * gRPC handlers: test/streams-two-apps.e2e-spec.ts), and a subscription's `resolve` option failing
 * an exchange per event.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import {
  type CallHandler, Controller, type ExecutionContext, Module, type NestInterceptor, Sse, UseInterceptors,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { GraphQLModule, Query, Resolver, Subscription } from '@nestjs/graphql';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { interval, map, type Observable, take } from 'rxjs';
import { Access, type AccessContext, Grant, KeycardConnections, KeycardModule, TokenExchangeError } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { readEventStream } from './support/event-stream.js';
import { R } from './support/forge.js';
import { acknowledgedGraphQLWs, GRAPHQL_SERVERS, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';
import { freePort } from './support/free-port.js';
import { send } from './support/http.js';
import { callToolWithToken, startMcpApp } from './support/mcp-app.js';
import { McpController, Tool } from '@rekog/mcp-nest';
import { Get } from '@nestjs/common';

const UP = 'https://upstream.example.com';
const SECRET = 'trial-streams-client-secret-5f0b';
/** What the zone writes in its own error answers: no client and no log line may carry it. */
const ZONE_TEXT = 'zone-private-trial-streams-91ce';
/** What an app's own cleanup error says: it is the app's, never the client's. */
const INTERNAL = 'internal-cleanup-detail-3a7e';
const UNAVAILABLE_TEXT = 'The authorization server is unavailable, retry later';
const UNAVAILABLE_FIELDS = { error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT };

/** A zone overloaded for longer than the API retries: 503 + Retry-After for the API's caller. */
const ZONE_503 = { kind: 'status', status: 503, headers: { 'retry-after': '600' }, body: JSON.stringify({ error: 'temporarily_unavailable', error_description: ZONE_TEXT }) } as const;

/** Which hand-written sources were released (their `return()` called), by name. */
const released: string[] = [];

type Events<T> = AsyncIterableIterator<T>;

/** A hand-written event source (not a generator): `next` as given, `return` as given. */
function source<T>(next: () => Promise<IteratorResult<T>>, return_: () => unknown): Events<T> {
  const it = { next, return: return_, [Symbol.asyncIterator]: () => it };
  return it as unknown as Events<T>;
}

@Resolver()
class StreamsResolver {
  /** The grant's error rethrown by the source's first `next()`; the source's `return()` throws synchronously (not async). */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  syncThrowingReturn(@Access() access: AccessContext): Events<{ syncThrowingReturn: string }> {
    let calls = 0;
    return source(
      async () => ({ done: false, value: { syncThrowingReturn: access.access(UP).scope } }),
      () => {
        released.push('syncThrowingReturn');
        // Only the first call fails: a second one (Mercurius closing) would otherwise throw out of its close handler.
        if (++calls === 1) throw new Error(`cleanup failed: ${INTERNAL}`);
        return Promise.resolve({ done: true, value: undefined });
      },
    );
  }

  /** The same, but `return()` answers a plain result, not a promise (graphql-js awaits whatever it gets). */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  plainReturn(@Access() access: AccessContext): Events<{ plainReturn: string }> {
    return source(
      async () => ({ done: false, value: { plainReturn: access.access(UP).scope } }),
      () => {
        released.push('plainReturn');
        return { done: true, value: undefined };
      },
    );
  }

  /** The same with an async `return()` that rejects: the protocol's shape. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  rejectingReturn(@Access() access: AccessContext): Events<{ rejectingReturn: string }> {
    let calls = 0;
    return source(
      async () => ({ done: false, value: { rejectingReturn: access.access(UP).scope } }),
      async () => {
        released.push('rejectingReturn');
        // Only the first call rejects: a second one (Mercurius forgetting it) would be an unhandled rejection.
        if (++calls === 1) throw new Error(`cleanup failed: ${INTERNAL}`);
        return { done: true, value: undefined };
      },
    );
  }

  /** The grant's error out of the first `next()`; `return()` counts its calls and resolves. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  countedReturn(@Access() access: AccessContext): Events<{ countedReturn: string }> {
    return source(
      async () => ({ done: false, value: { countedReturn: access.access(UP).scope } }),
      async () => {
        released.push('countedReturn');
        return { done: true, value: undefined };
      },
    );
  }

  /** No grant: a hand-written source whose `next()` answers plain results, not promises (graphql-js awaits whatever it gets). */
  @Subscription(() => String, { nullable: true })
  plainNext(): Events<{ plainNext: string }> {
    let n = 0;
    const it = {
      next: () => (n++ < 2 ? { done: false, value: { plainNext: `tick-${n}` } } : { done: true, value: undefined }),
      return: () => ({ done: true, value: undefined }),
      [Symbol.asyncIterator]: () => it,
    };
    return it as unknown as Events<{ plainNext: string }>;
  }

  /** A hand-written source whose `next()` (not async) throws the grant's error synchronously. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  throwingNext(@Access() access: AccessContext): Events<{ throwingNext: string }> {
    return source(
      () => Promise.resolve({ done: false, value: { throwingNext: access.access(UP).scope } }),
      async () => ({ done: true, value: undefined }),
    );
  }

  /** An exchange the zone refuses (invalid_grant) out of the generator's body, after one event. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  async *refusedAfterOne(@Access() access: AccessContext): AsyncGenerator<{ refusedAfterOne: string }> {
    yield { refusedAfterOne: 'first' };
    yield { refusedAfterOne: access.access(UP).scope };
  }

  /** One event, then waits for ever; the client completes it. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  endless(): Events<{ endless: string }> {
    let n = 0;
    return source(
      () => (n++ === 0 ? Promise.resolve({ done: false, value: { endless: 'first' } }) : new Promise(() => undefined)),
      async () => {
        released.push('endless');
        return { done: true, value: undefined };
      },
    );
  }

  /** The grant's error rethrown in an async generator's body after one event. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true })
  async *afterOne(@Access() access: AccessContext): AsyncGenerator<{ afterOne: string }> {
    yield { afterOne: 'first' };
    yield { afterOne: access.access(UP).scope };
  }

  /** With a `filter` (Nest wraps the iterator once more), failing its grant after one event. */
  @Grant(UP, 'up:read')
  @Subscription(() => String, { nullable: true, filter: () => true })
  async *filtered(@Access() access: AccessContext): AsyncGenerator<{ filtered: string }> {
    yield { filtered: 'first' };
    yield { filtered: access.access(UP).scope };
  }

  /** No grant: an app's own failure that is not an exchange. */
  @Subscription(() => String, { nullable: true })
  async *plainFailure(): AsyncGenerator<{ plainFailure: string }> {
    yield { plainFailure: 'first' };
    throw new Error(`plain failure ${INTERNAL}`);
  }

  /** No grant: the app called the exchange itself (TokenExchangeService) and rethrew its error. */
  @Subscription(() => String, { nullable: true })
  async *ownExchange(): AsyncGenerator<{ ownExchange: string }> {
    yield { ownExchange: 'first' };
    throw new TokenExchangeError(`the token endpoint answered 503 ${ZONE_TEXT}`, 'unavailable', undefined, 503, 30);
  }

  @Grant(UP, 'up:read')
  @Query(() => String, { nullable: true })
  upstream(@Access() access: AccessContext): string {
    return `granted ${access.access(UP).scope}`;
  }

  /** An outage (503) the handler meets. */
  @Query(() => String, { nullable: true })
  outage(): string {
    throw new TokenExchangeError('the token endpoint could not be reached', 'unavailable', undefined, 503, 30);
  }
}

/** What one subscription got: its events, then its error (GraphQL errors, or how the socket closed), if any. */
interface SubscriptionRun {
  events: unknown[];
  errors?: { message?: string; extensions?: Record<string, unknown> }[];
  closed?: { code: number; reason: string };
}

/** One subscription over graphql-ws (the real client, Apollo) or a raw graphql-transport-ws socket (Mercurius), until it ends. */
async function runSubscription(server: string, wsUrl: string, token: string, query: string): Promise<SubscriptionRun> {
  if (server === 'mercurius') {
    const socket = await acknowledgedGraphQLWs(wsUrl, token);
    try {
      return await new Promise<SubscriptionRun>((resolve) => {
        const events: unknown[] = [];
        socket.on('message', (raw) => {
          const message = JSON.parse(String(raw)) as { type: string; payload?: unknown };
          if (message.type === 'next') events.push(message.payload);
          else if (message.type === 'error') resolve({ events, errors: errorsIn(message.payload) });
          else if (message.type === 'complete') resolve({ events });
        });
        socket.once('close', (code, reason) => resolve({ events, closed: { code, reason: String(reason) } }));
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
      });
    } finally {
      socket.terminate();
    }
  }
  let closed: SubscriptionRun['closed'];
  const client = createClient({
    url: wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true,
    on: { closed: (event) => (closed = { code: (event as { code: number }).code, reason: String((event as { reason: string }).reason) }) },
  });
  try {
    return await new Promise<SubscriptionRun>((resolve) => {
      const events: unknown[] = [];
      client.subscribe({ query }, {
        next: (value) => events.push(value),
        error: (error: unknown) => resolve({ events, errors: errorsIn(error), closed }),
        complete: () => resolve({ events }),
      });
    });
  } finally {
    await client.dispose();
  }
}

function errorsIn(payload: unknown): SubscriptionRun['errors'] {
  if (Array.isArray(payload)) return payload as SubscriptionRun['errors'];
  const errors = (payload as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) ? (errors as SubscriptionRun['errors']) : undefined;
}

/** Waits (bounded) until `done()`; the test then asserts on the state, not on the time. */
async function until(done: () => boolean, tries = 100): Promise<void> {
  for (let i = 0; i < tries && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
}

const REFUSED = expect.objectContaining({
  message: UNAVAILABLE_TEXT,
  extensions: expect.objectContaining({ code: 'SERVICE_UNAVAILABLE', error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT }),
});

/** An app interceptor of its own on an `@Sse()` route: wraps every event's data. */
class WrapEvents implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((event: { data: unknown }) => ({ data: { wrapped: event.data } })));
  }
}

@Controller()
class StreamsController {
  /** 200 events, then the grant's error. */
  @Grant(UP, 'up:read')
  @Sse('many')
  many(@Access() access: AccessContext) {
    return interval(1).pipe(take(201), map((n) => ({ data: n < 200 ? { n } : { scope: access.access(UP).scope } })));
  }

  /** One event, then the grant's error, through the app's own interceptor. */
  @Grant(UP, 'up:read')
  @UseInterceptors(WrapEvents)
  @Sse('wrapped')
  wrapped(@Access() access: AccessContext) {
    return interval(5).pipe(take(2), map((n) => ({ data: n === 0 ? { n } : { scope: access.access(UP).scope } })));
  }

  /** Large events (a client slower than the server), then the grant's error. */
  @Grant(UP, 'up:read')
  @Sse('large')
  large(@Access() access: AccessContext) {
    const blob = 'x'.repeat(64 * 1024);
    return interval(1).pipe(take(41), map((n) => ({ data: n < 40 ? { n, blob } : { scope: access.access(UP).scope } })));
  }
}

/** One SSE controller class served by two apps of one process. */
@Controller()
class SharedSseController {
  @Grant(UP, 'up:read')
  @Sse('shared')
  shared(@Access() access: AccessContext) {
    return interval(5).pipe(take(2), map((n) => ({ data: n === 0 ? { n } : { scope: access.access(UP).scope } })));
  }
}

/** Schema-first: every method of a `@Resolver('Subscription')` class is a subscription field (Nest reads the class's type). */
@Resolver('Subscription')
class SchemaFirstSubscriptions {
  /** No method-level `@Subscription()`: Nest makes it a subscription from the class. */
  @Grant(UP, 'up:read')
  async *classTicks(@Access() access: AccessContext): AsyncGenerator<{ classTicks: string }> {
    yield { classTicks: 'first' };
    yield { classTicks: access.access(UP).scope };
  }

  @Grant(UP, 'up:read')
  @Subscription()
  async *methodTicks(@Access() access: AccessContext): AsyncGenerator<{ methodTicks: string }> {
    yield { methodTicks: 'first' };
    yield { methodTicks: access.access(UP).scope };
  }
}

@Resolver('Query')
class SchemaFirstQueries {
  @Query()
  ok(): string {
    return 'ok';
  }
}

const SCHEMA_FIRST = 'type Query { ok: String } type Subscription { classTicks: String methodTicks: String }';

/** An Apollo app (graphql-ws guarded by Keycard) created, not listening yet. */
async function createApollo(options: object, logger: CapturingLogger, providers: unknown[], graphql: Partial<ApolloDriverConfig>) {
  @Module({
    imports: [
      KeycardModule.forRoot({ ...options, logger } as never),
      GraphQLModule.forRootAsync<ApolloDriverConfig>({
        driver: ApolloDriver,
        inject: [KeycardConnections],
        useFactory: (keycard: KeycardConnections) => ({ graphiql: false, subscriptions: { 'graphql-ws': keycard.graphqlWs() }, ...graphql }),
      }),
    ],
    providers: providers as never[],
  })
  class ApolloAppModule {}
  return NestFactory.create(ApolloAppModule, new ExpressAdapter(), { logger: false, abortOnError: false });
}

async function listening(app: Awaited<ReturnType<typeof NestFactory.create>>): Promise<string> {
  await app.listen(0, '127.0.0.1');
  return `ws://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/graphql`;
}

/** An mcp-nest tool class that also serves a plain HTTP route (`@McpController()` is a Nest controller). */
@McpController()
class ToolsWithRoute {
  @Tool({ name: 'routed_upstream', description: 'Calls the upstream API for the user' })
  @Grant(UP, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { by: access.access(UP).scope };
  }

  @Get('plain/tool-status')
  status() {
    return { ok: true };
  }
}

/** Tools for the batch attack. */
@McpController()
class BatchTools {
  @Tool({ name: 'batch_upstream', description: 'Calls the upstream API for the user' })
  @Grant(UP, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { by: access.access(UP).scope };
  }
}

/** The same shape, served by one app only. */
@McpController()
class SoloToolsWithRoute {
  @Tool({ name: 'solo_upstream', description: 'Calls the upstream API for the user' })
  @Grant(UP, 'up:read')
  upstream(@Access() access: AccessContext) {
    return { by: access.access(UP).scope };
  }

  @Get('plain/solo-status')
  status() {
    return { ok: true };
  }
}

describe('trial: a failed exchange out of a stream', () => {
  let zone: TestZone;
  const keycard = () => ({ zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'svc', clientSecret: SECRET } });

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R, clients: [{ clientId: 'svc', clientSecret: SECRET }], resources: { [UP]: ['up:read'] } });
  });
  beforeEach(() => {
    zone.reset();
    released.length = 0;
  });
  afterAll(async () => {
    await zone?.stop();
  });

  describe.each(GRAPHQL_SERVERS)('GraphQL subscriptions: %s', (_name, server) => {
    let api: RunningGraphQLApp;
    beforeAll(async () => {
      api = await startGraphQLApp(server, keycard(), {
        providers: [StreamsResolver],
        ...(server === 'mercurius' ? { mercuriusSubscription: [] as [] } : {}),
      });
    });
    afterAll(async () => {
      await api?.close();
    });
    const errorsSince = (before: number) => api.logger.levels.error.slice(before);

    it('a source whose return() throws synchronously, failing its grant (zone 503) → the SERVICE_UNAVAILABLE refusal with the fixed text (releasing the source must never replace the answer), nothing of the app\'s error leaked', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { syncThrowingReturn }');
      expect(run.errors).toEqual([REFUSED]);
      expectNoLeak(run, [token, ZONE_TEXT, SECRET, INTERNAL], api.logger.lines);
    });

    it('a source whose return() answers a plain result (not a promise), failing its grant (zone 503) → the SERVICE_UNAVAILABLE refusal with the fixed text, the source released', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { plainReturn }');
      expect(run.errors).toEqual([REFUSED]);
      expect(released).toContain('plainReturn');
      expectNoLeak(run, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: a source whose async return() rejects, failing its grant (zone 503) → the refusal with the fixed text, the source released, its error not leaked; one error line', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { rejectingReturn }');
      expect(run.errors).toEqual([REFUSED]);
      expect(released).toContain('rejectingReturn');
      expect(errorsSince(before)).toHaveLength(1);
      expectNoLeak(run, [token, ZONE_TEXT, SECRET, INTERNAL], api.logger.lines);
    });

    it(server === 'mercurius'
      ? 'Mercurius: a subscription whose source failed its grant (zone 503) → the source released once, though both the refusal and Mercurius forgetting it release it (a second return() that rejects was an unhandled rejection)'
      : 'held: a subscription whose source failed its grant (zone 503) → the source released once', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { countedReturn }');
      expect(run.errors).toEqual([REFUSED]);
      await until(() => released.length > 1, 10);
      expect(released).toEqual(['countedReturn']);
    });

    it('held: an endless source waiting for its next event, completed by the client (connection kept open) → the source released', async () => {
      const token = zone.issueToken({ scope: 'profile' });
      if (server === 'mercurius') {
        const socket = await acknowledgedGraphQLWs(api.wsUrl, token);
        try {
          const first = await new Promise<unknown>((resolve) => {
            socket.on('message', (raw) => resolve(JSON.parse(String(raw))));
            socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { endless }' } }));
          });
          expect(first).toMatchObject({ type: 'next', payload: { data: { endless: 'first' } } });
          socket.send(JSON.stringify({ id: '1', type: 'complete' }));
          await until(() => released.includes('endless'));
          expect(released).toEqual(['endless']);
        } finally {
          socket.terminate();
        }
        return;
      }
      const client = createClient({ url: api.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: false });
      try {
        const first = await new Promise<unknown>((resolve, reject) => {
          const stop = client.subscribe({ query: 'subscription { endless }' }, {
            next: (value) => {
              stop();
              resolve(value);
            },
            error: reject,
            complete: () => undefined,
          });
        });
        expect(first).toEqual({ data: { endless: 'first' } });
        await until(() => released.includes('endless'));
        expect(released).toEqual(['endless']);
      } finally {
        await client.dispose();
      }
    });

    it('held: an async generator failing its grant after one event → that event, then the refusal with the fixed text; one error line; nothing leaked', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { afterOne }');
      expect(run.events).toEqual([{ data: { afterOne: 'first' } }]);
      expect(run.errors).toEqual([REFUSED]);
      expect(errorsSince(before)).toHaveLength(1);
      expectNoLeak(run, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: a subscription with a `filter` (Nest wraps its iterator) failing its grant after one event → that event, then the refusal with the fixed text', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { filtered }');
      expect(run.events).toEqual([{ data: { filtered: 'first' } }]);
      expect(run.errors).toEqual([REFUSED]);
    });

    it('a subscription WITHOUT @Grant whose hand-written source answers next() with plain results (not promises; graphql-js awaits them) → its two events, then the end, as before every @Subscription() was wrapped', async () => {
      const run = await runSubscription(server, api.wsUrl, zone.issueToken({ scope: 'profile' }), 'subscription { plainNext }');
      expect(run).toEqual({ events: [{ data: { plainNext: 'tick-1' } }, { data: { plainNext: 'tick-2' } }] });
    });

    it('a hand-written source whose next() (not async) throws the grant\'s error synchronously (zone 503) → the SERVICE_UNAVAILABLE refusal with the fixed text, one error line', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { throwingNext }');
      expect(run.errors).toEqual([REFUSED]);
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expect(JSON.stringify(run)).not.toContain(UP);
    });

    it('held: an exchange the zone refuses (invalid_grant) in the generator after one event → that event, then UNAUTHENTICATED invalid_token with the fixed text; the connection stays open for another subscription', async () => {
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: ZONE_TEXT }) };
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { refusedAfterOne }');
      expect(run.events).toEqual([{ data: { refusedAfterOne: 'first' } }]);
      expect(run.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'UNAUTHENTICATED', error: 'invalid_token' }) })]);
      expect(run.closed).toBeUndefined();
      expectNoLeak(run, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: a subscription without @Grant failing with an error that is not an exchange → left as it is: no refusal, no exchange log line', async () => {
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.lines.length;
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { plainFailure }');
      expect(run.events).toEqual([{ data: { plainFailure: 'first' } }]);
      expect(JSON.stringify(run)).not.toContain('SERVICE_UNAVAILABLE');
      expect(api.logger.lines.slice(before).filter((line) => line.includes('Token exchange failed'))).toEqual([]);
    });

    it('held: a subscription without @Grant rethrowing its own TokenExchangeService failure → the refusal with the fixed text, the zone\'s text not leaked', async () => {
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription(server, api.wsUrl, token, 'subscription { ownExchange }');
      expect(run.events).toEqual([{ data: { ownExchange: 'first' } }]);
      expect(run.errors).toEqual([REFUSED]);
      // The log line carries the app's own message (logSafe): only the client's answer is checked here.
      expectNoLeak(run, [token, ZONE_TEXT, SECRET], []);
    });

    (server === 'mercurius' ? it : it.skip)('held: Mercurius forgets a subscription failed by its grant: the same id subscribed again on the connection is answered again (not "already exists")', async () => {
      zone.faults.token = ZONE_503;
      const socket = await acknowledgedGraphQLWs(api.wsUrl, zone.issueToken({ scope: 'profile' }));
      try {
        const answers: { type: string; payload?: unknown }[] = [];
        socket.on('message', (raw) => answers.push(JSON.parse(String(raw)) as { type: string }));
        for (let round = 0; round < 3; round++) {
          const seen = answers.length;
          socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { afterOne }' } }));
          await until(() => answers.slice(seen).some((a) => a.type === 'error' || a.type === 'complete') || socket.readyState !== WebSocket.OPEN);
        }
        const errors = answers.filter((a) => a.type === 'error').map((a) => errorsIn(a.payload));
        expect(errors).toEqual([[REFUSED], [REFUSED], [REFUSED]]);
        expect(socket.readyState).toBe(WebSocket.OPEN);
      } finally {
        socket.terminate();
      }
    });

    it('held: 30 subscriptions on one connection failing their grant at once → each its refusal, at most a line and a summary logged', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const N = 30;
      const results: SubscriptionRun['errors'][] = [];
      if (server === 'mercurius') {
        const socket = await acknowledgedGraphQLWs(api.wsUrl, token);
        try {
          socket.on('message', (raw) => {
            const message = JSON.parse(String(raw)) as { type: string; payload?: unknown };
            if (message.type === 'error') results.push(errorsIn(message.payload));
          });
          for (let i = 0; i < N; i++) socket.send(JSON.stringify({ id: `s${i}`, type: 'subscribe', payload: { query: 'subscription { afterOne }' } }));
          await until(() => results.length >= N, 250);
        } finally {
          socket.terminate();
        }
      } else {
        const client = createClient({ url: api.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true });
        try {
          await Promise.all(Array.from({ length: N }, () => new Promise<void>((resolve) => {
            client.subscribe({ query: 'subscription { afterOne }' }, {
              next: () => undefined,
              error: (error: unknown) => {
                results.push(errorsIn(error));
                resolve();
              },
              complete: resolve,
            });
          })));
        } finally {
          await client.dispose();
        }
      }
      expect(results).toHaveLength(N);
      expect(results.every((errors) => JSON.stringify(errors) === JSON.stringify([{ message: UNAVAILABLE_TEXT, extensions: { code: 'SERVICE_UNAVAILABLE', error: 'temporarily_unavailable', error_description: UNAVAILABLE_TEXT } }]) || (errors?.length === 1 && errors[0]?.message === UNAVAILABLE_TEXT))).toBe(true);
      await until(() => false, 10); // the connection's close writes its summary
      expect(errorsSince(before).length).toBeLessThanOrEqual(2);
      expect(errorsSince(before).length).toBeGreaterThanOrEqual(1);
    }, 20_000);

    it('held: a field the guard refuses (403 insufficient_scope) next to an outage (503) → status 403 and an insufficient_scope challenge (status and challenge from one refusal)', async () => {
      const res = await postGraphQL(api.url, '{ whoami outage }', zone.issueToken({ scope: 'profile' }));
      expect(res.body.errors?.map((e) => [e.path?.[0], e.extensions?.code])).toEqual(expect.arrayContaining([['whoami', 'FORBIDDEN'], ['outage', 'SERVICE_UNAVAILABLE']]));
      expect({ status: res.status, error: res.challenge?.params.error }).toEqual({ status: 403, error: 'insufficient_scope' });
    });

    it('held: an exchange the zone refuses (401 invalid_grant) next to an outage (503) → status 401 and an invalid_token challenge', async () => {
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: ZONE_TEXT }) };
      const res = await postGraphQL(api.url, '{ outage upstream }', zone.issueToken({ scope: 'profile' }));
      expect(res.body.errors?.map((e) => [e.path?.[0], e.extensions?.code])).toEqual(expect.arrayContaining([['upstream', 'UNAUTHENTICATED'], ['outage', 'SERVICE_UNAVAILABLE']]));
      expect({ status: res.status, error: res.challenge?.params.error }).toEqual({ status: 401, error: 'invalid_token' });
      expect(res.text).not.toContain(ZONE_TEXT);
    });

    it('held: all three (403 guard, 401 exchange, 503 outage) in one operation → status 401 and an invalid_token challenge', async () => {
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: ZONE_TEXT }) };
      const res = await postGraphQL(api.url, '{ outage whoami upstream }', zone.issueToken({ scope: 'profile' }));
      expect({ status: res.status, error: res.challenge?.params.error }).toEqual({ status: 401, error: 'invalid_token' });
    });
  });

  describe('an @Sse() route (Express)', () => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp('express', keycard(), { controllers: [StreamsController] });
    });
    afterAll(async () => {
      await api?.close();
    });
    const get = (path: string, token: string) => readEventStream(`${api.url}${path}`, { Authorization: `Bearer ${token}` });

    it('held: a stream failing its grant after 200 events → the 200 events, then one `event: error` with the fixed fields, then the end; one error line; nothing leaked', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = api.logger.levels.error.length;
      const answer = await get('/many', token);
      expect(answer.status).toBe(200);
      expect(answer.events).toHaveLength(201);
      expect(answer.events.slice(0, 200).every((e, n) => e.event === undefined && JSON.parse(e.data).n === n)).toBe(true);
      expect({ event: answer.events[200]?.event, data: JSON.parse(answer.events[200]?.data ?? 'null') }).toEqual({ event: 'error', data: UNAVAILABLE_FIELDS });
      expect(api.logger.levels.error.slice(before)).toHaveLength(1);
      expectNoLeak(answer, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: 6 streams failing their grant after 200 events with this service misconfigured at the zone (invalid_client) → each ends with `event: error` server_error and the fixed text; one error line (the once-a-minute gate), naming no zone text', async () => {
      zone.faults.token = { kind: 'status', status: 401, body: JSON.stringify({ error: 'invalid_client', error_description: ZONE_TEXT }) };
      const before = api.logger.levels.error.length;
      const lasts: unknown[] = [];
      for (let i = 0; i < 6; i++) {
        const answer = await get('/many', zone.issueToken({ scope: 'profile' }));
        const last = answer.events.at(-1);
        lasts.push({ count: answer.events.length, event: last?.event, error: (JSON.parse(last?.data ?? 'null') as { error?: string } | null)?.error });
      }
      expect(new Set(lasts.map((l) => JSON.stringify(l)))).toEqual(new Set([JSON.stringify({ count: 201, event: 'error', error: 'server_error' })]));
      const lines = api.logger.levels.error.slice(before);
      expect(lines).toHaveLength(1);
      expect(lines.join('\n')).not.toContain(ZONE_TEXT);
    }, 20_000);

    it('held: an app interceptor of its own on the route (wrapping events) → its event, then the `event: error` with the fixed fields', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const answer = await get('/wrapped', token);
      expect(answer.events.map((e) => [e.event, JSON.parse(e.data)])).toEqual([[undefined, { wrapped: { n: 0 } }], ['error', UNAVAILABLE_FIELDS]]);
      expectNoLeak(answer, [token, ZONE_TEXT, SECRET], api.logger.lines);
    });

    it('held: a slow client (reads nothing for a while) of 40 large events, then the grant\'s failure → every event, then the `event: error` with the fixed fields', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const { request } = await import('node:http');
      const text = await new Promise<string>((resolve, reject) => {
        const req = request(`${api.url}/large`, { headers: { Accept: 'text/event-stream', Authorization: `Bearer ${token}` }, agent: false }, (res) => {
          res.pause();
          let body = '';
          setTimeout(() => {
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (body += chunk));
            res.on('end', () => resolve(body));
            res.resume();
          }, 500);
        });
        req.on('error', reject);
        req.end();
      });
      const blocks = text.split('\n\n').filter((b) => b.trim() !== '');
      expect(blocks).toHaveLength(41);
      const last = Object.fromEntries(blocks[40]!.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()]));
      expect({ event: last.event, data: JSON.parse(last.data ?? 'null') }).toEqual({ event: 'error', data: UNAVAILABLE_FIELDS });
      expect(blocks.slice(0, 40).every((b) => b.includes('"blob"'))).toBe(true);
    }, 20_000);
  });

  describe('two Nest apps of one process serving one @Sse() controller class, both created before either listens', () => {
    const apps: { app: Awaited<ReturnType<typeof NestFactory.create>>; logger: CapturingLogger; url?: string }[] = [];
    beforeAll(async () => {
      for (let i = 0; i < 2; i++) {
        const logger = new CapturingLogger();
        @Module({ imports: [KeycardModule.forRoot({ ...keycard(), logger })], controllers: [SharedSseController] })
        class SharedSseModule {}
        apps.push({ app: await NestFactory.create(SharedSseModule, new ExpressAdapter(), { logger: false, abortOnError: false }), logger });
      }
      for (const entry of apps) {
        await entry.app.listen(0, '127.0.0.1');
        entry.url = `http://127.0.0.1:${(entry.app.getHttpServer().address() as { port: number }).port}`;
      }
    });
    afterAll(async () => {
      for (const { app } of apps) await app.close();
    });

    it('held: the same on app B (created last) → answered and logged by app B', async () => {
      zone.faults.token = ZONE_503;
      const [a, b] = apps as [typeof apps[0], typeof apps[0]];
      const [beforeA, beforeB] = [a.logger.levels.error.length, b.logger.levels.error.length];
      const answer = await readEventStream(`${b.url}/shared`, { Authorization: `Bearer ${zone.issueToken({ scope: 'profile' })}` });
      expect(answer.events.map((e) => e.event)).toEqual([undefined, 'error']);
      expect({ a: a.logger.levels.error.slice(beforeA).length, b: b.logger.levels.error.slice(beforeB).length }).toEqual({ a: 0, b: 1 });
    });
  });

  describe('mcp-nest tool classes with a plain HTTP route', () => {
    type McpApp = Awaited<ReturnType<typeof startMcpApp>>;
    const apps: McpApp[] = [];
    const start = async (tools: NonNullable<Parameters<typeof startMcpApp>[0]['tools']>) => {
      const port = await freePort();
      const app = await startMcpApp({ adapter: 'express', zoneUrl: '', port, keycard: { zoneUrl: zone.issuer, clientCredentials: { clientId: 'svc', clientSecret: SECRET } }, tools });
      apps.push(app);
      return { app, resource: `http://127.0.0.1:${port}/mcp` };
    };
    afterAll(async () => {
      for (const app of apps.splice(0)) await app.close();
    });

    it('held: one app: the tool class\'s HTTP route answers 200 to a valid token, and its tool\'s failed grant (zone 503) is the isError text', async () => {
      const { app, resource } = await start([SoloToolsWithRoute]);
      const token = zone.issueToken({ aud: resource, scope: 'mcp:tools' });
      const res = await send(app.url, 'GET', '/plain/solo-status', [['Authorization', `Bearer ${zone.issueToken({ aud: `${app.url}/plain` })}`]]);
      expect(res.status).toBe(200);
      zone.faults.token = ZONE_503;
      const result = await callToolWithToken(`${app.url}/mcp`, token, 'solo_upstream');
      expect(result).toMatchObject({ isError: true, content: [{ type: 'text', text: `temporarily_unavailable: ${UNAVAILABLE_TEXT}` }] });
    });

    it('held: a JSON-RPC batch of three tool calls whose grant fails (zone 503), on app B of two apps sharing the tool class → three isError texts with the fixed description, one line in B\'s log, none in A\'s; nothing leaked', async () => {
      const a = await start([BatchTools]);
      const { app, resource } = await start([BatchTools]);
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ aud: resource, scope: 'mcp:tools' });
      const [beforeA, before] = [a.app.logger.levels.error.length, app.logger.levels.error.length];
      const call = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'batch_upstream', arguments: {} } });
      const res = await fetch(`${app.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-03-26' },
        body: JSON.stringify([call(1), call(2), call(3)]),
      });
      const text = await res.text();
      const answers = JSON.parse(text) as { id: number; result?: { isError?: boolean; content?: { text?: string }[] } }[];
      expect(answers.map((answer) => [answer.id, answer.result?.isError, answer.result?.content?.[0]?.text])).toEqual(
        [1, 2, 3].map((id) => [id, true, `temporarily_unavailable: ${UNAVAILABLE_TEXT}`]),
      );
      expect(app.logger.levels.error.slice(before)).toHaveLength(1);
      expect(a.app.logger.levels.error.slice(beforeA)).toEqual([]);
      expectNoLeak(text, [token, ZONE_TEXT, SECRET], app.logger.lines);
    });

    it('two apps of one process serving a tool class that also has a plain HTTP route → 200 on each app, judged by that app\'s own guard', async () => {
      const a = await start([ToolsWithRoute]);
      const b = await start([ToolsWithRoute]);
      const statuses: number[] = [];
      for (const { app } of [a, b]) {
        const res = await send(app.url, 'GET', '/plain/tool-status', [['Authorization', `Bearer ${zone.issueToken({ aud: `${app.url}/plain` })}`]]);
        statuses.push(res.status);
      }
      expect(statuses).toEqual([200, 200]);
    });
  });

  describe('a schema-first Apollo app', () => {
    const logger = new CapturingLogger();
    let app: Awaited<ReturnType<typeof NestFactory.create>>;
    let wsUrl: string;
    beforeAll(async () => {
      app = await createApollo(keycard(), logger, [SchemaFirstSubscriptions, SchemaFirstQueries], { typeDefs: SCHEMA_FIRST });
      wsUrl = await listening(app);
    });
    afterAll(async () => {
      await app?.close();
    });

    it('held: a schema-first @Subscription() method failing its grant after one event → that event, then the refusal with the fixed text', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const run = await runSubscription('apollo', wsUrl, token, 'subscription { methodTicks }');
      expect(run.events).toEqual([{ data: { methodTicks: 'first' } }]);
      expect(run.errors).toEqual([REFUSED]);
      expectNoLeak(run, [token, ZONE_TEXT, SECRET], logger.lines);
    });

    it('a schema-first subscription field made by its class (`@Resolver(\'Subscription\')`, no method-level @Subscription()) failing its grant → the refusal with the fixed text, one error line', async () => {
      zone.faults.token = ZONE_503;
      const token = zone.issueToken({ scope: 'profile' });
      const before = logger.levels.error.length;
      const run = await runSubscription('apollo', wsUrl, token, 'subscription { classTicks }');
      expect(run.events).toEqual([{ data: { classTicks: 'first' } }]);
      expect(run.errors).toEqual([REFUSED]);
      expect(logger.levels.error.slice(before)).toHaveLength(1);
      expect(JSON.stringify(run)).not.toContain(UP);
    });
  });
});
