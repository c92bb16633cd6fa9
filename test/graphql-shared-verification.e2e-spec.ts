/**
 * Attack trial of the GraphQL shared verification (issue 24, `lib/decision/shared-verification.ts`):
 * a token new to the module is verified once per request and its outcome kept on the request for
 * the operation's later fields. Real apps on loopback (Apollo on Express, Mercurius on Fastify),
 * the real local zone, `fetch`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { R } from './support/forge.js';

describe.each(GRAPHQL_SERVERS)('GraphQL shared verification of a token new to the module: %s', (_name, server) => {
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
  const denials = (from: number) => api.logger.lines.slice(from).filter((l) => l.startsWith('denied '));

  it(`${row('N3')} a scoped field refused after an admitted field of the same operation, token new to the module: the refusal is logged once (not 0 times)`, async () => {
    const token = zone.issueToken({ client_id: 'agent-first', scope: 'profile' });
    const before = api.logger.lines.length;
    const res = await gql('{ orders { by } whoami }', token);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ orders: [{ by: 'agent-first' }], whoami: null });
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read' });
    expect(res.challenge?.params.error).toBe('insufficient_scope');
    expect(denials(before)).toHaveLength(1);
    expect(denials(before)[0]).toMatch(/status=403 reason=insufficient_scope/);
    expectNoLeak(res.body, [token], api.logger.lines);
  });
});

/**
 * An app whose GraphQL context hands resolvers the upgrade request of a graphql-ws connection as
 * `req` (`context: ({ req, extra }) => ({ req: req ?? extra.request })`, a common way to give HTTP
 * and WebSocket resolvers one shape): every operation of the connection then shares that one Node
 * request, for as long as the connection lives.
 */
describe('GraphQL shared verification on a request that outlives its first verification (Apollo, graphql-ws upgrade request as req)', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;
  const clients: Client[] = [];

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(
      'apollo',
      { zoneUrl: zone.issuer, resource: R },
      { graphql: { context: (ctx: { req?: unknown; extra?: { request?: unknown } }) => ({ req: ctx.req ?? ctx.extra?.request }) } },
    );
  });
  afterAll(async () => {
    for (const client of clients.splice(0)) await client.dispose();
    await api?.close();
    await zone?.stop();
  });

  it('T3 a token verified for a connection\'s first operation is refused on a later operation once it expired (the kept outcome is no pass past exp)', async () => {
    const upgradeToken = zone.issueToken({ client_id: 'agent-short', sub: 'alice', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 60 });
    const connectionToken = zone.issueToken({ client_id: 'agent-short', sub: 'alice', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 3600 });
    class WithHeaders extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { headers: { authorization: `Bearer ${upgradeToken}` } });
      }
    }
    const client = createClient({ url: api.wsUrl, webSocketImpl: WithHeaders, connectionParams: { authorization: `Bearer ${connectionToken}` }, retryAttempts: 0, lazy: false });
    clients.push(client);
    const query = async () => {
      const results: { data?: unknown; errors?: readonly { message: string; extensions?: Record<string, unknown> }[] }[] = [];
      for await (const result of client.iterate({ query: '{ whoami }' })) results.push(result as never);
      return results[0];
    };
    api.clock.offsetMs = 0;
    expect(await query()).toEqual({ data: { whoami: 'agent-short/alice' } });
    api.clock.offsetMs = 120_000; // the upgrade request's token has expired; the connection's has not
    try {
      const later = await query();
      expect(later.data).toEqual({ whoami: null });
      expect(later.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED', error: 'invalid_token' });
      expectNoLeak(later, [upgradeToken, connectionToken], api.logger.lines);
    } finally {
      api.clock.offsetMs = 0;
    }
  });
});
