/**
 * GraphQL resolvers behind the Keycard guard (catalogue §N1–N5, decision Q16): Apollo on Express and
 * Mercurius on Fastify, queried with `fetch` over loopback; subscriptions over graphql-ws with the
 * real `graphql-ws` client.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { KeycardGuard, type AgentContext } from '../lib/index.js';
import { KeycardStrategy } from '../lib/resource-server/keycard.strategy.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { GRAPHQL_SERVERS, graphqlWsClient, postGraphQL, startGraphQLApp, type GraphQLAnswer, type GraphQLServer, type RunningGraphQLApp } from './support/graphql-app.js';
import { PRM, R } from './support/forge.js';
import { parseChallenge } from './support/http.js';
import { auditRecordsV1 } from './support/audit-records.js';

const SERVERS = GRAPHQL_SERVERS;

describe.each(SERVERS)('GraphQL: %s', (_name, server) => {
  // Row ID prefix: N1–N3 for Apollo, N4 (the same cases) for Mercurius.
  const row = (id: string) => (server === 'apollo' ? id : `N4 (${id})`);
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, auditLog: true });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const gql = (query: string, token?: string) => postGraphQL(api.url, query, token);

  /** Q16: a GraphQL error with the code, the OAuth error and scope, the HTTP challenge and status; nothing leaked. */
  function expectRefusal(res: GraphQLAnswer, status: 401 | 403, error: string | undefined, scope: string | undefined, secrets: string[]) {
    expect({ status: res.status, text: res.text.slice(0, 400) }).toMatchObject({ status });
    expect(res.challenge?.scheme).toBe('Bearer');
    expect(res.challenge?.params.resource_metadata).toBe(PRM);
    expect(res.challenge?.params.error).toBe(error);
    expect(res.challenge?.params.scope).toBe(scope);
    expect(res.body.errors).toHaveLength(1);
    const [gqlError] = res.body.errors!;
    expect(gqlError.extensions).toMatchObject({ code: status === 401 ? 'UNAUTHENTICATED' : 'FORBIDDEN' });
    expect(gqlError.extensions?.error).toBe(error);
    expect(gqlError.extensions?.scope).toBe(scope);
    expectFixedDescription(gqlError.message);
    expectNoLeak(res.body, secrets, api.logger.lines);
  }

  it(`${row('N1')} undecorated resolver without a token → UNAUTHENTICATED, HTTP 401∅`, async () => {
    const res = await gql('{ orders { id } }');
    expectRefusal(res, 401, undefined, undefined, []);
    expect(res.challenge?.names).toEqual(['resource_metadata']);
  });

  it(`${row('N1')} undecorated resolver with a forged token → UNAUTHENTICATED invalid_token, HTTP 401 IT`, async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const res = await gql('{ orders { id } }', token);
    expectRefusal(res, 401, 'invalid_token', undefined, [token]);
    expect(res.challenge?.params.error_description).toBe(res.body.errors![0].message);
  });

  it(`${row('N1')} valid token on the undecorated resolver → data`, async () => {
    const res = await gql('{ orders { id by } }', zone.issueToken({ client_id: 'agent-7' }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { orders: [{ id: 'o-1', by: 'agent-7' }] } });
  });

  it(`${row('N2')} @Public() resolver without a token → data`, async () => {
    const res = await gql('{ health }');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { health: 'ok' } });
  });

  it(`${row('N3')} @RequireScopes resolver, token with the scope → data with the agent (@Agent() as a resolver argument)`, async () => {
    const res = await gql('{ whoami }', zone.issueToken({ client_id: 'agent-3', sub: 'alice', scope: 'orders:read' }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { whoami: 'agent-3/alice' } });
  });

  it(`${row('N3')} @RequireScopes resolver, token without the scope → FORBIDDEN insufficient_scope with scope, HTTP 403`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await gql('{ whoami }', token);
    expectRefusal(res, 403, 'insufficient_scope', 'orders:read', [token]);
  });

  it(`${row('N3')} mutation without its scope → FORBIDDEN naming orders:write`, async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    const res = await gql('mutation { placeOrder(id: "o-9") { id } }', token);
    expectRefusal(res, 403, 'insufficient_scope', 'orders:write', [token]);
  });

  it(`${row('N3')} part of the operation ran (public field served, protected field refused) → HTTP 200 with data and the error`, async () => {
    const res = await gql('{ health whoami }');
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ health: 'ok' });
    expect(res.body.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(res.challenge?.scheme).toBe('Bearer');
  });

  it(`${row('N3')} every field is judged: a scoped field after an admitted unscoped one in the same operation → FORBIDDEN`, async () => {
    const token = zone.issueToken({ client_id: 'agent-mix', scope: 'profile' });
    await gql('{ orders { by } }', token);
    await gql('{ orders { by } }', token); // the token is now in the verified-token cache (its second verification): judged synchronously
    const res = await gql('{ orders { by } whoami }', token);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ orders: [{ by: 'agent-mix' }], whoami: null });
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read' });
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N3')} a public and a protected field behind a fragment spread: the public one ran → HTTP 200 with its data, not 401`, async () => {
    for (const query of ['{ ...Both } fragment Both on Query { health whoami }', '{ ... on Query { health whoami } }']) {
      const res = await gql(query);
      expect({ query, status: res.status }).toEqual({ query, status: 200 });
      expect(res.body.data).toMatchObject({ health: 'ok', whoami: null });
      expect(res.body.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    }
  });

  it(`${row('N3')} a batch (array body) whose second operation ran → HTTP 200 with both results, not 401`, async () => {
    const res = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ query: '{ whoami }' }, { query: '{ health }' }]),
    });
    const body = (await res.json()) as { data?: Record<string, unknown> | null; errors?: { extensions?: Record<string, unknown> }[] }[];
    expect(res.status).toBe(200);
    expect(body).toHaveLength(2);
    expect(body[0].errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(body[1]).toEqual({ data: { health: 'ok' } });
    expect(parseChallenge(res.headers.get('www-authenticate') ?? undefined)?.scheme).toBe('Bearer');
  });

  it(`${row('Q16')} (Q12) @RequireScopes resolver without a token → UNAUTHENTICATED naming the field's scope, HTTP 401∅ + scope`, async () => {
    const res = await gql('{ whoami }');
    expectRefusal(res, 401, undefined, 'orders:read', []);
  });

  it(`${row('Q16')} (Q12) @RequireScopes resolver with a forged token → UNAUTHENTICATED invalid_token naming the field's scope, HTTP 401 IT + scope`, async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const res = await gql('{ ledger }', token);
    expectRefusal(res, 401, 'invalid_token', 'orders:read ledger:read', [token]);
  });

  it(`${row('Q16')} one operation, fields with different scopes refused 401 (one shared refusal per token): each error names its own field's scopes`, async () => {
    const forgedToken = forged(zone.issueToken({ scope: 'orders:read' }));
    for (const token of [undefined, forgedToken]) {
      const before = api.logger.lines.length;
      const res = await gql('{ a: whoami b: ledger c: orders { id } d: whoami e: ledger }', token);
      expect(res.status).toBe(401);
      expect(res.challenge?.params.error).toBe(token === undefined ? undefined : 'invalid_token');
      // The one challenge of the response names every scope the operation was refused for.
      expect(res.challenge?.params.scope?.split(' ').sort()).toEqual(['ledger:read', 'orders:read']);
      const byField = Object.fromEntries(res.body.errors!.map((e) => {
        const { code, error, scope } = e.extensions ?? {};
        expectFixedDescription(e.message);
        return [(e as { path?: string[] }).path?.[0], { code, error, scope }];
      }));
      const refused = { code: 'UNAUTHENTICATED', error: token === undefined ? undefined : 'invalid_token' };
      expect(byField).toStrictEqual({
        a: { ...refused, scope: 'orders:read' },
        b: { ...refused, scope: 'orders:read ledger:read' },
        c: { ...refused, scope: undefined },
        d: { ...refused, scope: 'orders:read' },
        e: { ...refused, scope: 'orders:read ledger:read' },
      });
      if (token !== undefined) expect(api.logger.lines.slice(before).filter((l) => l.startsWith('denied '))).toHaveLength(1);
      expectNoLeak(res.body, token === undefined ? [] : [token], api.logger.lines);
    }
  });

  it(`${row('Q16')} fields refused 403 for different scopes: the response's challenge names every scope the operation needs, each error its own field's`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await gql('{ books: ledger mine: whoami }', token); // the last field refused names the fewest scopes
    expect(res.status).toBe(403);
    expect(res.challenge).toMatchObject({ scheme: 'Bearer', params: { error: 'insufficient_scope', resource_metadata: PRM } });
    expect(res.challenge?.params.scope?.split(' ').sort()).toEqual(['ledger:read', 'orders:read']);
    const scopeOf = Object.fromEntries(res.body.errors!.map((e) => [(e as { path?: string[] }).path?.[0], e.extensions?.scope]));
    expect(scopeOf).toEqual({ mine: 'orders:read', books: 'orders:read ledger:read' });
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N10')} a token lacking the scope of 200 aliased fields: 200 FORBIDDEN errors, one denial line for the request`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const before = api.logger.lines.length;
    const res = await gql(`{ ${Array.from({ length: 200 }, (_, i) => `a${i}: whoami`).join(' ')} }`, token);
    expect(res.status).toBe(403);
    expect(res.body.errors).toHaveLength(200);
    expect(res.body.errors!.every((e) => e.extensions?.code === 'FORBIDDEN' && e.extensions?.scope === 'orders:read')).toBe(true);
    expect(api.logger.lines.slice(before).filter((l) => l.startsWith('denied '))).toHaveLength(1);
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N10')} a forged token refused for many aliased fields of one operation is verified and logged once, not once per field`, async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const before = api.logger.lines.length;
    const res = await gql(`{ ${Array.from({ length: 200 }, (_, i) => `a${i}: whoami`).join(' ')} }`, token);
    expect(res.status).toBe(401);
    expect(res.body.errors).toHaveLength(200);
    expect(res.body.errors!.every((e) => e.extensions?.error === 'invalid_token' && e.extensions?.scope === 'orders:read')).toBe(true);
    expect(api.logger.lines.slice(before).filter((l) => l.startsWith('denied '))).toHaveLength(1);
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N10')} a valid token new to the module on 200 aliased fields of one operation: verified once, every field served with its agent`, async () => {
    // A token's first verification does not enter the verified-token cache: the later fields take the first one's outcome.
    const token = zone.issueToken({ scope: 'orders:read', sub: 'fields-user', client_id: 'fields-agent' });
    const verify = jest.spyOn(api.app.get(KeycardStrategy), 'verify');
    try {
      const res = await gql(`{ ${Array.from({ length: 200 }, (_, i) => `a${i}: whoami`).join(' ')} }`, token);
      expect(res.status).toBe(200);
      expect(res.body.errors).toBeUndefined();
      expect(Object.values(res.body.data as Record<string, unknown>)).toEqual(Array.from({ length: 200 }, () => 'fields-agent/fields-user'));
      expect(verify).toHaveBeenCalledTimes(1);
      expectNoLeak(res.body, [token], api.logger.lines);
    } finally {
      verify.mockRestore();
    }
  });

  it(`${row('N8')} @Public() is honoured in GraphQL and audited with the operation instead of a route`, async () => {
    const res = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query Probe { health }', operationName: 'Probe' }),
    });
    expect(res.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const lines = api.logger.lines.filter((l) => l.includes('"route":"graphql query Probe"'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ method: 'POST', status: 200 });
  });

  it(`${row('N10')} audit: one record per request naming its operation (not its first field) and, when some were refused, which fields`, async () => {
    const token = zone.issueToken({ client_id: 'agent-op', sub: 'frank', scope: 'orders:read' });
    const before = api.logger.lines.length;
    const partial = await gql('{ health orders { id } }');
    expect(partial.status).toBe(200);
    expect(partial.body.data).toBeNull(); // `orders` is non-null: its refusal nulls the whole result (health ran)
    expect(partial.body.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    const refusedAll = await gql('query Shop { a: orders { id } b: whoami c: orders { id } }');
    expect(refusedAll.status).toBe(401);
    // 200 aliases of one field: named once.
    const flood = await gql(`{ ${Array.from({ length: 200 }, (_, i) => `a${i}: whoami`).join(' ')} }`);
    expect(flood.status).toBe(401);
    const batch = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ query: '{ whoami }' }, { query: 'query Up { health }' }]),
    });
    expect(batch.status).toBe(200);
    expect((await gql('query Mine { whoami }', token)).body).toEqual({ data: { whoami: 'agent-op/frank' } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const audit = auditRecordsV1(api.logger.lines.slice(before));
    const record = (route: string, status: number, refused?: string[]) => ({
      event: 'keycard.audit', method: 'POST', route, status, durationMs: expect.any(Number),
      ...(refused === undefined ? {} : { reason: 'no_credentials', refused }),
    });
    expect(audit).toEqual([
      record('graphql query anonymous', 200, ['Query.orders']),
      record('graphql query Shop', 401, ['Query.orders', 'Query.whoami']),
      record('graphql query anonymous', 401, ['Query.whoami']),
      record('graphql batch', 200, ['Query.whoami']),
      { ...record('graphql query Mine', 200), issuer: expect.any(String), agent: 'agent-op', user: 'frank', scopes: ['orders:read'], tokenId: expect.any(String) },
    ]);
    expectNoLeak(audit, [token], api.logger.lines);
  });

  it(`${row('N10')} refusals name the operation in the log, never the token`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    await gql('query Mine { whoami }', token);
    expect(api.logger.lines.some((l) => l.startsWith('denied graphql query Mine.whoami status=403 reason=insufficient_scope'))).toBe(true);
    expect(api.logger.lines.some((l) => l.includes(token))).toBe(false);
  });
});

/** An app's stricter guard: every scoped resolver also needs `extra`. */
@Injectable()
class StricterGuard extends KeycardGuard {
  protected override hasScopes(agent: AgentContext, required: readonly string[]): boolean {
    return agent.scopes.includes('extra') && super.hasScopes(agent, required);
  }
}

/** Imported after KeycardModule, so Nest runs the module's guard first and the subclass second. */
@Module({ providers: [{ provide: APP_GUARD, useClass: StricterGuard }] })
class StricterGuardModule {}

describe.each(SERVERS)('GraphQL with an app\'s KeycardGuard subclass as a second APP_GUARD: %s', (_name, server) => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { imports: [StricterGuardModule] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const gql = (query: string, token: string) => postGraphQL(api.url, query, token);

  // The module's guard admits the field first; the subclass must judge it with its own hook, never
  // take the module guard's admission of the same resolver call for its own.
  it('M4 the subclass judges every resolver call with its own hook: the module guard admitting it first is not enough', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    const res = await gql('{ whoami }', token);
    expect(res.status).toBe(403);
    expect(res.challenge).toMatchObject({ scheme: 'Bearer', params: { error: 'insufficient_scope', scope: 'orders:read' } });
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read' });
    expectFixedDescription(res.body.errors![0].message);
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it('M4 a token the subclass accepts is served, field after field', async () => {
    const res = await gql('{ whoami orders { id } }', zone.issueToken({ client_id: 'agent-5', sub: 'bob', scope: 'orders:read extra' }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { whoami: 'agent-5/bob', orders: [{ id: 'o-1' }] } });
  });
});

/** graphql-ws clients of the subscription suites: each suite disposes its own before closing its app. */
const clients: Client[] = [];
async function disposeClients(): Promise<void> {
  for (const client of clients.splice(0)) await client.dispose();
}

interface Outcome {
  events: string[];
  errors: unknown[];
  closed?: { code: number; reason: string };
}

/**
 * Subscribes at `url` with `connectionParams` and collects what arrives until `until` resolves or the
 * socket closes. `url` may name the WebSocket class too (one sending headers with its upgrade).
 */
type SubscribeArgs = [connectionParams: Record<string, unknown> | undefined, query: string, until: (o: Outcome) => boolean, onEvent?: (o: Outcome) => void];
function subscribeAt(url: string | { url: string; webSocketImpl: unknown }, ...[connectionParams, query, until, onEvent]: SubscribeArgs): Promise<Outcome> {
  const outcome: Outcome = { events: [], errors: [] };
  return new Promise((resolve) => {
    const client = graphqlWsClient(url, connectionParams, (closed) => {
      outcome.closed = closed;
      resolve(outcome);
    });
    clients.push(client);
    const stop = client.subscribe<Record<string, string>>({ query }, {
      next: (value) => {
        if (value.data) outcome.events.push(Object.values(value.data)[0]);
        if (value.errors) outcome.errors.push(...value.errors);
        onEvent?.(outcome);
        if (until(outcome)) {
          stop();
          resolve(outcome);
        }
      },
      error: (error) => {
        outcome.errors.push(error);
        if (!outcome.closed) resolve(outcome);
      },
      complete: () => resolve(outcome),
    });
  });
}

/** The first GraphQL error of a refused subscription (graphql-ws sends it as a result or an `error` message). */
function firstError(outcome: Outcome): { message?: string; extensions?: Record<string, unknown> } {
  const [first] = outcome.errors as unknown[];
  return (Array.isArray(first) ? first[0] : first) as { message?: string; extensions?: Record<string, unknown> };
}

const auditSince = (app: RunningGraphQLApp, from: number) =>
  auditRecordsV1(app.logger.lines.slice(from));

/** The app's `onConnect` of the `allowAnonymous` suites: graphql-ws hands it the context, Mercurius the message. */
type AppOnConnect = (arg: { connectionParams?: unknown; payload?: unknown }) => boolean;

/**
 * Subscriptions with Keycard's connection hook: Apollo's graphql-ws server with `graphqlWs()`,
 * Mercurius (Fastify, graphql-transport-ws) with `mercuriusSubscription()`. Same rules, same answers.
 */
const SUBSCRIPTION_SERVERS: [string, GraphQLServer][] = [
  ['Apollo', 'apollo'],
  ['Mercurius', 'mercurius'],
];

function subscriptionHooks(server: GraphQLServer, onConnect?: AppOnConnect, allowAnonymous?: boolean) {
  const args: [hooks: { onConnect?: AppOnConnect }, options: { allowAnonymous?: boolean }] = [onConnect ? { onConnect } : {}, { allowAnonymous }];
  return server === 'apollo' ? { graphqlWs: args } : { mercuriusSubscription: args };
}

describe.each(SUBSCRIPTION_SERVERS)('GraphQL subscriptions over graphql-ws (%s)', (_name, server) => {
  // Row ID prefix: N5 (N8) for Apollo, N4 (the same cases) for Mercurius.
  const row = (id: string) => (server === 'apollo' ? id : `N4 (${id})`);
  let zone: TestZone;
  let api: RunningGraphQLApp;
  const subscribe = (...args: SubscribeArgs) => subscribeAt(api.wsUrl, ...args);

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, auditLog: true }, subscriptionHooks(server));
  });
  afterAll(async () => {
    await disposeClients();
    await api?.close();
    await zone?.stop();
  });

  it(`${row('N5')} no token in connectionParams → connection refused (4401), no event`, async () => {
    const outcome = await subscribe(undefined, 'subscription { ticks }', () => false);
    expect(outcome.closed).toEqual({ code: 4401, reason: 'unauthorized' });
    expect(outcome.events).toEqual([]);
    expectNoLeak(outcome, [], api.logger.lines);
  });

  it(`${row('N5')} forged token → connection refused (4401 invalid_token), no event, nothing leaked`, async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const outcome = await subscribe({ authorization: `Bearer ${token}` }, 'subscription { ticks }', () => false);
    expect(outcome.closed).toEqual({ code: 4401, reason: 'invalid_token' });
    expect(outcome.events).toEqual([]);
    expectNoLeak(outcome, [token], api.logger.lines);
  });

  it(`${row('N5')} connectionParams whose token is no string (token: 12345, authorization: [..]) → 4401 invalid_token (malformed, not missing)`, async () => {
    for (const params of [{ token: 12345 }, { authorization: ['Bearer abc'] }, { token: { a: 1 } }]) {
      const outcome = await subscribe(params, 'subscription { ticks }', () => false);
      expect({ params, closed: outcome.closed }).toEqual({ params, closed: { code: 4401, reason: 'invalid_token' } });
      expect(outcome.events).toEqual([]);
    }
  });

  it(`${row('N5')} valid token (connectionParams.authorization) → events delivered`, async () => {
    const outcome = await subscribe({ authorization: `Bearer ${zone.issueToken({ scope: 'orders:read' })}` }, 'subscription { ticks }', (o) => o.events.length >= 3);
    expect(outcome.events).toEqual(['tick-0', 'tick-1', 'tick-2']);
    expect(outcome.closed).toBeUndefined();
  });

  it(`${row('N5')} valid token (connectionParams.token) without the scope → the subscription gets FORBIDDEN insufficient_scope`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const outcome = await subscribe({ token }, 'subscription { ticks }', (o) => o.errors.length > 0);
    expect(outcome.events).toEqual([]);
    expect(firstError(outcome).extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read' });
    expectNoLeak(outcome, [token], api.logger.lines);
  });

  it(`${row('N5')} a valid token that expires during the subscription → no event after exp + tolerance, connection closed 4401`, async () => {
    const token = zone.issueToken({ scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 120 });
    const expMs = (Math.floor(Date.now() / 1000) + 120) * 1000;
    let afterExpiry = 0;
    const outcome = await subscribe({ authorization: `Bearer ${token}` }, 'subscription { ticks }', () => false, (o) => {
      if (api.clock.offsetMs > 0) afterExpiry++;
      // Two events in, move the module's clock past exp (tolerance 0 in this app).
      if (o.events.length === 2) api.clock.offsetMs = expMs - Date.now() + 1000;
    });
    api.clock.offsetMs = 0;
    expect(outcome.events).toEqual(['tick-0', 'tick-1']);
    expect(afterExpiry).toBe(0);
    expect(outcome.closed).toEqual({ code: 4401, reason: 'invalid_token' });
  });

  it(`${row('N5')} a connection with no subscription (no event due) is still closed 4401 invalid_token at exp + tolerance`, async () => {
    const exp = Math.floor(Date.now() / 1000) + 120;
    const token = zone.issueToken({ scope: 'orders:read', exp });
    // The module's clock 1 s before exp (tolerance 0 in this app): only the expiry timer can close it, about 1 s later.
    api.clock.offsetMs = exp * 1000 - Date.now() - 1000;
    try {
      const closed = await new Promise<{ code: number; reason: string } | 'pending'>((resolve) => {
        const client = createClient({
          url: api.wsUrl,
          webSocketImpl: WebSocket,
          connectionParams: { token },
          retryAttempts: 0,
          lazy: false,
          // The close is the outcome under test (on.closed); graphql-ws would also console.error it.
          onNonLazyError: () => undefined,
          on: { closed: (event) => resolve({ code: (event as { code: number }).code, reason: String((event as { reason: string }).reason) }) },
        });
        clients.push(client);
        setTimeout(() => resolve('pending'), 3000).unref();
      });
      expect(closed).toEqual({ code: 4401, reason: 'invalid_token' });
    } finally {
      api.clock.offsetMs = 0;
    }
  });

  it(`${row('N8')} @Public() subscription field over a verified connection (token without the scope of ticks) → events`, async () => {
    // The connection itself always needs a token (verified when it opens); the field is then public.
    const outcome = await subscribe({ authorization: `Bearer ${zone.issueToken({ scope: 'profile' })}` }, 'subscription { publicTicks }', (o) => o.events.length >= 2);
    expect(outcome.events).toEqual(['p-0', 'p-1']);
  });

  it('audit: every connection_init has a record — refused (no token, forged, two tokens, zone down) with status and reason, no agent; opened (101) with its agent; never a token', async () => {
    const valid = zone.issueToken({ client_id: 'agent-gws', sub: 'erin', scope: 'orders:read' });
    const fake = forged(zone.issueToken({ client_id: 'agent-forger', scope: 'orders:read' }));
    const before = api.logger.lines.length;
    const never = () => false;
    const refused = [
      await subscribe(undefined, 'subscription { ticks }', never),
      await subscribe({ authorization: `Bearer ${fake}` }, 'subscription { ticks }', never),
      await subscribe({ authorization: `Bearer ${valid}`, token: valid }, 'subscription { ticks }', never),
    ];
    // A key the module has not seen while the zone's JWKS fails, past the refetch cooldown: the refetch fails, 503.
    zone.faults.jwks = { kind: 'status', status: 500 };
    const unseen = zone.issueToken({ client_id: 'agent-gws', scope: 'orders:read' }, { kid: zone.rotateKeys() });
    api.clock.offsetMs = 31_000;
    try {
      refused.push(await subscribe({ token: unseen }, 'subscription { ticks }', never));
    } finally {
      api.clock.offsetMs = 0;
      zone.reset();
    }
    expect(refused.map((o) => o.closed)).toEqual([
      { code: 4401, reason: 'unauthorized' },
      { code: 4401, reason: 'invalid_token' },
      { code: 4400, reason: 'invalid_request' },
      { code: 1013, reason: 'temporarily_unavailable' },
    ]);
    const opened = await subscribe({ token: valid }, 'subscription { ticks }', (o) => o.events.length >= 1);
    expect(opened.events).toEqual(['tick-0']);
    const connection = (status: number, reason: string) => ({ event: 'keycard.audit', method: 'GRAPHQL-WS', route: 'connection', status, reason, durationMs: expect.any(Number) });
    const agent = { issuer: expect.any(String), agent: 'agent-gws', user: 'erin', scopes: ['orders:read'], tokenId: expect.any(String) };
    expect(auditSince(api, before)).toEqual([
      connection(401, 'no_credentials'),
      connection(401, 'signature_invalid'),
      connection(400, 'multiple_tokens'),
      connection(503, 'zone_unavailable'),
      { event: 'keycard.audit', ...agent, method: 'GRAPHQL-WS', route: 'connection', status: 101, durationMs: expect.any(Number) },
      { event: 'keycard.audit', ...agent, method: 'GRAPHQL', route: 'subscription anonymous.ticks', status: 200, durationMs: expect.any(Number) },
    ]);
    expectNoLeak([...refused, opened], [valid, fake, unseen], api.logger.lines);
  });

  describe(`with ${server === 'apollo' ? 'graphqlWs' : 'mercuriusSubscription'}({ onConnect }, { allowAnonymous: true })`, () => {
    let anon: RunningGraphQLApp;
    /** connectionParams the app's own onConnect saw: it runs after Keycard's, for admitted connections only. */
    const appConnects: unknown[] = [];
    const subscribeAnon = (...args: SubscribeArgs) => subscribeAt(anon.wsUrl, ...args);

    beforeAll(async () => {
      const onConnect: AppOnConnect = (arg) => {
        appConnects.push((server === 'apollo' ? arg.connectionParams : arg.payload) ?? null);
        return true;
      };
      anon = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, auditLog: true }, subscriptionHooks(server, onConnect, true));
    });
    afterAll(async () => {
      await disposeClients();
      await anon?.close();
    });

    it(`${row('N8')} anonymous connection (no token in connectionParams) → @Public() subscription delivers events; the app's onConnect ran`, async () => {
      const before = appConnects.length;
      const outcome = await subscribeAnon({ client: 'anonymous' }, 'subscription { publicTicks }', (o) => o.events.length >= 2);
      expect(outcome.events).toEqual(['p-0', 'p-1']);
      expect(outcome.errors).toEqual([]);
      expect(outcome.closed).toBeUndefined();
      expect(appConnects.slice(before)).toEqual([{ client: 'anonymous' }]);
    });

    it('audit: an anonymous connection is recorded opened (101) without an agent', async () => {
      const before = anon.logger.lines.length;
      const outcome = await subscribeAnon(undefined, 'subscription { publicTicks }', (o) => o.events.length >= 1);
      expect(outcome.events).toEqual(['p-0']);
      expect(auditSince(anon, before)).toEqual([{ event: 'keycard.audit', method: 'GRAPHQL-WS', route: 'connection', status: 101, durationMs: expect.any(Number) }]);
    });

    it(`${row('N5')} (N8) anonymous connection → a scoped subscription is refused UNAUTHENTICATED through the guard, no event, nothing leaked`, async () => {
      const outcome = await subscribeAnon(undefined, 'subscription { ticks }', (o) => o.errors.length + o.events.length > 0);
      expect(outcome.events).toEqual([]);
      expect(outcome.closed).toBeUndefined();
      const error = firstError(outcome);
      expect(error.extensions).toMatchObject({ code: 'UNAUTHENTICATED', scope: 'orders:read' });
      expect(error.extensions?.error).toBeUndefined();
      expectFixedDescription(error.message);
      expectNoLeak(outcome, [], anon.logger.lines);
      expect(anon.logger.lines.some((l) => l.startsWith('denied graphql subscription anonymous.ticks status=401 reason=no_credentials'))).toBe(true);
    });

    it(`${row('N5')} a forged token is still refused (4401 invalid_token): allowAnonymous is for no token, not a bad one`, async () => {
      const token = forged(zone.issueToken({ scope: 'orders:read' }));
      const before = appConnects.length;
      const outcome = await subscribeAnon({ authorization: `Bearer ${token}` }, 'subscription { publicTicks }', (o) => o.events.length > 0);
      expect(outcome.closed).toEqual({ code: 4401, reason: 'invalid_token' });
      expect(outcome.events).toEqual([]);
      expect(appConnects.length).toBe(before);
      expectNoLeak(outcome, [token], anon.logger.lines);
    });

    it(`${row('N5')} a malformed token (token: 12345, authorization: [..]) is still refused (4401 invalid_token), not taken for no token`, async () => {
      for (const params of [{ token: 12345 }, { authorization: ['Bearer abc'] }]) {
        const outcome = await subscribeAnon(params, 'subscription { publicTicks }', (o) => o.events.length > 0);
        expect({ params, closed: outcome.closed }).toEqual({ params, closed: { code: 4401, reason: 'invalid_token' } });
        expect(outcome.events).toEqual([]);
      }
    });
  });
});

describe('GraphQL subscriptions on Mercurius without KeycardConnections.mercuriusSubscription() (subscription: true)', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0, auditLog: true }, { mercuriusSubscription: 'unguarded' });
  });
  afterAll(async () => {
    await disposeClients();
    await api?.close();
    await zone?.stop();
  });

  // Before: every subscription got "raw.once is not a function" (auditLog) or "response.setHeader is
  // not a function" (N10), and a token in the upgrade request's Authorization header was judged once,
  // then events flowed past its exp (N5). Now such a connection has no token Keycard can vouch for.
  it('N4 (N5) a protected subscription is refused UNAUTHENTICATED whatever the client sends (no token, payload token, upgrade header), no event, nothing leaked, one log line naming the fix', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    class WithHeader extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols, { headers: { authorization: `Bearer ${token}` } });
      }
    }
    const until = (o: Outcome) => o.errors.length + o.events.length > 0;
    const outcomes = [
      await subscribeAt(api.wsUrl, undefined, 'subscription { ticks }', until),
      await subscribeAt(api.wsUrl, { authorization: `Bearer ${token}` }, 'subscription { ticks }', until),
      await subscribeAt(api.wsUrl, { headers: { authorization: `Bearer ${token}` } }, 'subscription { ticks }', until),
      await subscribeAt({ url: api.wsUrl, webSocketImpl: WithHeader }, undefined, 'subscription { ticks }', until),
    ];
    for (const outcome of outcomes) {
      expect(outcome.events).toEqual([]);
      const error = firstError(outcome);
      expect(error.extensions).toEqual({ code: 'UNAUTHENTICATED', error_description: error.message, scope: 'orders:read' });
      expectFixedDescription(error.message);
    }
    expectNoLeak(outcomes, [token], api.logger.lines);
    expect(api.logger.lines.filter((l) => l.includes('KeycardConnections.mercuriusSubscription()'))).toHaveLength(1);
  });

  it('N4 (N8) a @Public() subscription is served (audit log on)', async () => {
    const outcome = await subscribeAt(api.wsUrl, undefined, 'subscription { publicTicks }', (o) => o.events.length >= 2);
    expect(outcome).toEqual({ events: ['p-0', 'p-1'], errors: [] });
  });
});
