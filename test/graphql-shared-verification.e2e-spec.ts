/**
 * Attack trial of the GraphQL shared verification (issue 24, `lib/decision/shared-verification.ts`):
 * a token new to the module is verified once per request and its outcome kept on the request for
 * the operation's later fields. Real apps on loopback (Apollo on Express, Mercurius on Fastify),
 * the real local zone, `fetch`.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Query, Resolver } from '@nestjs/graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { Agent, OptionalAuth, type AgentContext } from '../lib/index.js';
import { KeycardStrategy } from '../lib/resource-server/keycard.strategy.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { R } from './support/forge.js';
import { auditRecordsV1 } from './support/audit-records.js';

/** An `@OptionalAuth()` field beside the suite app's fields: the agent's id, or `anonymous`. */
@Resolver()
class OptionalResolver {
  @OptionalAuth()
  @Query(() => String, { nullable: true })
  maybe(@Agent() agent?: AgentContext): string {
    return agent === undefined ? 'anonymous' : `agent:${agent.clientId}`;
  }
}

describe.each(GRAPHQL_SERVERS)('GraphQL shared verification of a token new to the module: %s', (_name, server) => {
  const row = (id: string) => (server === 'apollo' ? id : `N4 (${id})`);
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, auditLog: true }, { providers: [OptionalResolver] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const gql = (query: string, token?: string) => postGraphQL(api.url, query, token);
  const denials = (from: number) => api.logger.lines.slice(from).filter((l) => l.startsWith('denied '));
  /** The request's audit records (written as its response finishes). */
  const auditRecords = async (from: number) => {
    const records = () => auditRecordsV1(api.logger.lines.slice(from));
    for (let waited = 0; records().length === 0 && waited < 2000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    return records();
  };

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
    const records = await auditRecords(before);
    expect(records).toEqual([expect.objectContaining({ reason: 'insufficient_scope', refused: ['Query.whoami'] })]);
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('O3')} a forged token new to the module on 50 aliases beside a public and an @OptionalAuth() field: verified once, every protected field and the optional one refused, the public one served, one denial line`, async () => {
    const token = forged(zone.issueToken({ scope: 'orders:read' }));
    const verify = jest.spyOn(api.app.get(KeycardStrategy), 'verify');
    const before = api.logger.lines.length;
    try {
      const res = await gql(`{ health maybe ${Array.from({ length: 50 }, (_, i) => `a${i}: whoami`).join(' ')} }`, token);
      expect(res.status).toBe(200);
      expect(res.body.data).toMatchObject({ health: 'ok', a0: null, a49: null });
      expect(res.body.errors).toHaveLength(51);
      for (const error of res.body.errors!) expect(error.extensions).toMatchObject({ code: 'UNAUTHENTICATED', error: 'invalid_token' });
      expect(verify).toHaveBeenCalledTimes(1);
      expect(denials(before)).toHaveLength(1);
      expectNoLeak(res.body, [token], api.logger.lines);
    } finally {
      verify.mockRestore();
    }
  });

  it(`${row('T15')} the zone's keys not fresh (an unseen kid, JWKS down): the @OptionalAuth() field is served anonymously and the protected field answers 503 in either order, logged once, nothing leaked, no 500`, async () => {
    zone.faults.jwks = { kind: 'status', status: 500 };
    const token = zone.issueToken({ client_id: 'agent-outage', scope: 'orders:read' }, { kid: zone.rotateKeys() });
    try {
      for (const [i, query] of ['{ maybe whoami }', '{ whoami maybe }'].entries()) {
        api.clock.offsetMs = 31_000 * (i + 1); // past the refetch cooldown each time
        const before = api.logger.lines.length;
        const res = await gql(query, token);
        expect({ query, status: res.status }).toEqual({ query, status: 200 });
        expect(res.body.data).toEqual({ maybe: 'anonymous', whoami: null });
        expect(res.body.errors).toHaveLength(1);
        expect(res.body.errors![0].extensions).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
        // The 503 is logged once, also when the @OptionalAuth() field met the outage first (and was served).
        expect({ query, denials: denials(before) }).toEqual({ query, denials: ['denied graphql query anonymous.whoami status=503 reason=zone_unavailable'] });
        expectNoLeak(res.body, [token], api.logger.lines);
      }
    } finally {
      api.clock.offsetMs = 0;
      zone.reset();
    }
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

/**
 * An Express app whose own middleware sets `req.user` before the module (passport's session, another
 * auth middleware): not a Keycard agent. Apollo over Express only: the request `HttpRequestShape` seeds.
 * (A request the app freezes or seals breaks Express's router and Node's own writes before any guard runs.)
 */
describe('GraphQL over Express with the app\'s own req.user', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(
      'apollo',
      { zoneUrl: zone.issuer, resource: R },
      {
        configure: (app) =>
          app.use((req: { user?: unknown; headers: Record<string, unknown> }, _res: unknown, next: () => void) => {
            // passport's deserializeUser, or another auth middleware: an identity of the app's own
            req.user = { clientId: 'session-agent', userId: 'mallory', scopes: ['orders:read'], issuer: zone.issuer };
            next();
          }),
      },
    );
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(api.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  it('N1 an app\'s own req.user (a session identity) admits nothing: no token → UNAUTHENTICATED 401, with a valid token the agent is the token\'s', async () => {
    const refused = await postGraphQL(api.url, '{ whoami }');
    expect(refused.status).toBe(401);
    expect(refused.body.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    const token = zone.issueToken({ client_id: 'agent-real', sub: 'alice', scope: 'orders:read' });
    const admitted = await postGraphQL(api.url, '{ a: whoami b: whoami }', token);
    expect(admitted.body).toEqual({ data: { a: 'agent-real/alice', b: 'agent-real/alice' } });
    expectNoLeak(admitted.body, [token], api.logger.lines);
  });

  it('O4 a batch (array body), token new to the module lacking orders:read: the second operation\'s refused field is logged once, the first operation served', async () => {
    const token = zone.issueToken({ client_id: 'agent-batch', scope: 'profile' });
    const before = api.logger.lines.length;
    const res = await post([{ query: '{ orders { by } }' }, { query: '{ whoami }' }], { authorization: `Bearer ${token}` });
    const text = await res.text();
    expect(res.status).toBe(200);
    const [first, second] = JSON.parse(text) as { data?: unknown; errors?: { extensions?: Record<string, unknown> }[] }[];
    expect(first).toEqual({ data: { orders: [{ by: 'agent-batch' }] } });
    expect(second.data).toEqual({ whoami: null });
    expect(second.errors?.[0].extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'orders:read' });
    expect(api.logger.lines.slice(before).filter((l) => l.startsWith('denied '))).toHaveLength(1);
    expectNoLeak(text, [token], api.logger.lines);
  });

  it('N1 JSON bodies cannot reach the kept verification: __proto__ and symbol-named keys in the body change nothing', async () => {
    const res = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query":"{ whoami }","__proto__":{"user":{"clientId":"x"}},"Symbol(keycard.verifying)":{"failed":false,"agent":{"clientId":"x"}}}',
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { errors: { extensions: { code: string } }[] }).errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });
});

/**
 * An app whose GraphQL context hands resolvers a read-only request of its own making (a frozen copy
 * of the headers): not an IncomingMessage, nowhere to keep the shared verification.
 */
describe.each(GRAPHQL_SERVERS)('GraphQL with an app\'s frozen context request: %s', (_name, server) => {
  const row = (id: string) => (server === 'apollo' ? id : `N4 (${id})`);
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    type NodeLike = { headers: unknown; rawHeaders: unknown };
    const frozen = ({ headers, rawHeaders }: NodeLike) => ({ req: Object.freeze({ headers, rawHeaders, method: 'POST', url: '/graphql' }) });
    const context = server === 'apollo' ? (ctx: { req: NodeLike }) => frozen(ctx.req) : (request: { raw: NodeLike }) => frozen(request.raw);
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { graphql: { context } });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it(`${row('N10')} every field refused as a GraphQL refusal, with or without a token: never INTERNAL_SERVER_ERROR, a TypeError's message or a stack`, async () => {
    // Pre-existing: the admission writes \`user\` on the carrier, so even a valid token is refused here (fail closed).
    const token = zone.issueToken({ client_id: 'agent-frozen', sub: 'alice', scope: 'orders:read' });
    for (const bearer of [undefined, token, forged(token)]) {
      const res = await postGraphQL(api.url, '{ a: whoami b: whoami }', bearer);
      expect(res.status).not.toBe(500);
      expect(res.body.data).toEqual({ a: null, b: null });
      expect(res.body.errors).toHaveLength(2);
      for (const error of res.body.errors!) {
        expect(error.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
        expectFixedDescription(error.message);
      }
      expect(res.text).not.toMatch(/TypeError|not extensible|\.ts:\d+/);
      expectNoLeak(res.body, [token], api.logger.lines);
    }
  });
});
