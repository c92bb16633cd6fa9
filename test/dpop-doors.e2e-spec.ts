/**
 * DPoP on the doors other than a plain route (catalogue H26, H27): GraphQL over HTTP (Apollo on
 * Express, Mercurius on Fastify) and MCP Streamable HTTP take one proof per HTTP request, however
 * many operations or fields it carries; a DPoP-bound token in a graphql-ws `connectionParams`
 * payload is refused at open, since no proof can be checked there (decision Q39). The other parts
 * of H26 (`ws`, socket.io, gRPC, TCP) are in test/dpop-carriers.e2e-spec.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DpopKey } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { CountingReplayStore, dpopHeaders, expectDpopRefusal } from './support/dpop.js';
import { freePort } from './support/free-port.js';
import { R } from './support/forge.js';
import { GRAPHQL_SERVERS, graphqlWsClient, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { send } from './support/http.js';
import { startMcpApp, toolJson, type RunningMcpApp } from './support/mcp-app.js';

const key = DpopKey.generate();

describe.each(GRAPHQL_SERVERS)('DPoP over GraphQL (%s)', (_name, server) => {
  let zone: TestZone;
  let api: RunningGraphQLApp;
  let replay: CountingReplayStore;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    replay = new CountingReplayStore();
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, dpop: { mode: 'allowed', replayStore: replay } },
      server === 'apollo' ? {} : { mercuriusSubscription: [] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const post = (headers: [string, string][], body: unknown) =>
    send(api.url, 'POST', '/graphql', [['Content-Type', 'application/json'], ...headers], JSON.stringify(body));

  it('H27 GraphQL over HTTP: a batch of 3 operations with one proof → 200, one replay record; the replayed request → 401 invalid_dpop_proof', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    const headers = dpopHeaders(key, token, { method: 'POST', path: '/graphql' });
    const before = replay.keys.length;
    const batch = [{ query: '{ whoami }' }, { query: '{ orders { id } }' }, { query: '{ whoami orders { by } }' }];
    const res = await post(headers, batch);
    expect(res.status).toBe(200);
    const answers = res.json as { data?: Record<string, unknown>; errors?: unknown[] }[];
    expect(answers).toHaveLength(3);
    for (const answer of answers) expect(answer.errors).toBeUndefined();
    expect(answers[0].data).toEqual({ whoami: 'cli-1/cli-1' });
    expect(replay.keys.length - before).toBe(1);
    const replayed = await post(headers, { query: '{ whoami }' });
    expect(replayed.status).toBe(401);
    expect(replayed.text).toContain('invalid_dpop_proof');
    expect(replayed.text).not.toContain(token);
    expect(api.logger.lines.join('\n')).not.toContain(token);
  });

  it('H26 (c) graphql-ws: a DPoP-bound token in connectionParams → refused at open (4401 invalid_token; reason dpop_carrier_unsupported logged), nothing leaked', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'], dpopKey: key });
    let client: ReturnType<typeof graphqlWsClient> | undefined;
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      client = graphqlWsClient(api.wsUrl, { authorization: `Bearer ${token}` }, resolve);
      client.subscribe({ query: 'subscription { ticks }' }, { next: () => undefined, error: () => undefined, complete: () => undefined });
    });
    await client?.dispose();
    expect(closed).toEqual({ code: 4401, reason: 'invalid_token' });
    expect(api.logger.lines.some((line) => line.includes('reason=dpop_carrier_unsupported'))).toBe(true);
    expect(api.logger.lines.join('\n')).not.toContain(token);
  });
});

describe('H24 dpop required over graphql-ws (apollo)', () => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, dpop: 'required' }, {});
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('H24 graphql-ws in required mode: an unbound token in connectionParams → 4401 invalid_token (reason dpop_carrier_unsupported), as HTTP refuses Bearer', async () => {
    const token = zone.tokenFor({ scopes: ['orders:read'] });
    let client: ReturnType<typeof graphqlWsClient> | undefined;
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      client = graphqlWsClient(api.wsUrl, { authorization: `Bearer ${token}` }, resolve);
      client.subscribe({ query: 'subscription { ticks }' }, { next: () => undefined, error: () => undefined, complete: () => undefined });
    });
    await client?.dispose();
    expect(closed).toEqual({ code: 4401, reason: 'invalid_token' });
    expect(api.logger.lines.some((line) => line.includes('reason=dpop_carrier_unsupported'))).toBe(true);
    expect(api.logger.lines.join('\n')).not.toContain(token);
  });
});

describe('DPoP over MCP Streamable HTTP', () => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let port: number;
  let replay: CountingReplayStore;

  beforeAll(async () => {
    zone = await TestZone.start();
    port = await freePort();
    replay = new CountingReplayStore();
    api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, keycard: { zoneUrl: zone.issuer, dpop: { mode: 'required', replayStore: replay } } });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const callTool = (headers: [string, string][]) => send(api.url, 'POST', '/mcp', [
    ['Content-Type', 'application/json'],
    ['Accept', 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', '2025-06-18'],
    ...headers,
  ], JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami', arguments: {} } }));

  it('H27 MCP: tools/call with a DPoP-bound token and a proof for POST <endpoint> → served, one replay record; without a proof → 401 invalid_dpop_proof', async () => {
    const resource = `http://127.0.0.1:${port}/mcp`;
    const token = zone.issueToken({ aud: resource, scope: 'mcp:tools', client_id: 'agent-7', sub: 'alice', cnf: { jkt: key.thumbprint } });
    const proof = key.proof({ method: 'POST', url: resource, accessToken: token });
    const before = replay.keys.length;
    const res = await callTool([['Authorization', `DPoP ${token}`], ['DPoP', proof]]);
    expect(res.status).toBe(200);
    const body = res.text.startsWith('event:') || res.text.startsWith('data:') ? JSON.parse(res.text.split('data: ')[1]) : res.json;
    expect(toolJson((body as { result: unknown }).result)).toMatchObject({ agent: 'agent-7', user: 'alice' });
    expect(replay.keys.length - before).toBe(1);
    const refused = await callTool([['Authorization', `DPoP ${token}`]]);
    expectDpopRefusal(refused, { dpopError: 'invalid_dpop_proof', bearer: false, prm: `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`, secrets: [token], logs: api.logger.lines });
  });
});
