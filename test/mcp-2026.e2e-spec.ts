/**
 * MCP servers at revision 2026-07-28 (catalogue §U): the `Origin` check and the header–body check
 * that run before any token work, in that order, then the token, then the scopes judged from the
 * body. A real Nest app (mcp-nest 2.x on the MCP SDK 2.x server, which speaks 2026-07-28, and the
 * SDK 1.x transport in an `@McpEndpoint()` controller), tokens from a real TestZone, over loopback.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { randomUUID } from 'node:crypto';
import { McpController, Tool } from '@rekog/mcp-nest';
import { z } from 'zod';
import { Ctx } from '@nestjs/microservices';
import { Agent, McpStateHandles, type AgentContext } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { freePort } from './support/free-port.js';
import { send, sendRaw, type HttpAnswer } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { startMcpApp, toolJson, type RunningMcpApp } from './support/mcp-app.js';

const V2026 = '2026-07-28';
const FORBIDDEN_ORIGIN = { jsonrpc: '2.0', error: { code: -32600, message: 'Forbidden origin' } };

interface Rpc {
  method: string;
  params?: Record<string, unknown>;
  /** Protocol version in the body's `_meta` (2026-07-28 requests); `null`: none (an earlier revision). @default 2026-07-28 */
  bodyVersion?: string | null;
}

/** A JSON-RPC request body, with the 2026-07-28 per-request envelope unless `bodyVersion` is null. */
function bodyOf({ method, params = {}, bodyVersion = V2026 }: Rpc): string {
  const meta = bodyVersion === null ? {} : { _meta: { 'io.modelcontextprotocol/protocolVersion': bodyVersion, 'io.modelcontextprotocol/clientCapabilities': {} } };
  return JSON.stringify({ jsonrpc: '2.0', id: 7, method, params: { ...params, ...meta } });
}

/** The standard headers a 2026-07-28 client sends for `rpc` (SEP-2243), before a test changes them. */
function headersOf(rpc: Rpc, token?: string): [string, string][] {
  const headers: [string, string][] = [
    ['Content-Type', 'application/json'],
    ['Accept', 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', rpc.bodyVersion ?? V2026],
    ['Mcp-Method', rpc.method],
  ];
  const name = rpc.params?.name;
  if (typeof name === 'string') headers.push(['Mcp-Name', name]);
  if (token !== undefined) headers.push(['Authorization', `Bearer ${token}`]);
  return headers;
}

/** `headers` with `name` (any case) replaced by `value`, or removed when `value` is undefined. */
function withHeader(headers: [string, string][], name: string, value: string | undefined): [string, string][] {
  const kept = headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase());
  return value === undefined ? kept : [...kept, [name, value]];
}

const callOf = (name: string): Rpc => ({ method: 'tools/call', params: { name, arguments: {} } });

function expectForbiddenOrigin(res: HttpAnswer): void {
  expect(res.status).toBe(403);
  expect(res.json).toEqual(FORBIDDEN_ORIGIN);
  expect(res.headers['www-authenticate']).toBeUndefined();
}

function expectHeaderMismatch(res: HttpAnswer, id: unknown = 7): void {
  expect({ status: res.status, text: res.text.slice(0, 300) }).toMatchObject({ status: 400 });
  const body = res.json as { jsonrpc?: string; id?: unknown; error?: { code?: number; message?: string } };
  expect(body).toMatchObject({ jsonrpc: '2.0', id, error: { code: -32020 } });
  expect(res.headers['www-authenticate']).toBeUndefined();
}

describe.each(ADAPTERS)('MCP 2026-07-28 over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let origin: string;
  let resource: string;
  let prm: string;
  const token = (scope: string) => zone.issueToken({ aud: resource, scope, client_id: 'agent-7', sub: 'alice' });
  const post = (path: string, rpc: Rpc, headers: [string, string][]) => send(api.url, 'POST', path, headers, bodyOf(rpc));

  beforeAll(async () => {
    zone = await TestZone.start();
    const port = await freePort();
    origin = `http://127.0.0.1:${port}`;
    resource = `${origin}/mcp`;
    prm = `${origin}/.well-known/oauth-protected-resource/mcp`;
    api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port, keycard: { zoneUrl: zone.issuer, mcpAllowedOrigins: ['https://app.example.com'] } });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });
  beforeEach(() => zone.reset());

  it('U1 POST /mcp with Origin https://evil.example: 403 forbidden origin (JSON-RPC error, no id, no challenge) with and without a token; the token is never looked at; the tool does not run', async () => {
    const rpc = callOf('purge_orders');
    const list = { method: 'tools/list' };
    expect((await post('/mcp', list, headersOf(list, token('mcp:tools')))).status).toBe(200); // the zone's metadata and keys are loaded
    zone.reset();
    // A key id the zone never published: a token that were looked at would cost a JWKS fetch.
    const sent = zone.issueToken({ aud: resource, scope: 'mcp:tools admin', sub: 'alice' }, { header: { kid: 'never-published' } });
    for (const auth of [undefined, sent]) {
      const res = await post('/mcp', rpc, [...headersOf(rpc, auth), ['Origin', 'https://evil.example']]);
      expectForbiddenOrigin(res);
      expect(res.text).not.toContain('purged');
      expect(res.text).not.toContain(sent);
    }
    expect(zone.counts).toMatchObject({ metadata: 0, jwks: 0 });
    expect(api.logger.lines.join('\n')).not.toContain(sent);
  });

  it('U1 the same for GET and DELETE on the MCP endpoint, and on the SDK transport\'s @McpEndpoint() controller', async () => {
    const auth: [string, string][] = [['Authorization', `Bearer ${token('mcp:tools')}`], ['Origin', 'https://evil.example']];
    for (const method of ['GET', 'DELETE']) expectForbiddenOrigin(await send(api.url, method, '/mcp', [...auth, ['Accept', 'text/event-stream']]));
    const rpc = callOf('sdk_whoami');
    expectForbiddenOrigin(await post('/sdk-mcp', rpc, [...headersOf(rpc, token('')), ['Origin', 'https://evil.example']]));
  });

  it('U2 valid token: no Origin, the resource\'s origin, an origin in mcpAllowedOrigins, the same with its default port spelled out → served; Origin null and a look-alike suffix → 403', async () => {
    const rpc = { method: 'tools/list' };
    const ok = (extra: [string, string][]) => post('/mcp', rpc, [...headersOf(rpc, token('mcp:tools')), ...extra]);
    for (const allowed of [[], [['Origin', origin]], [['Origin', 'https://app.example.com']], [['Origin', 'https://app.example.com:443']]] as [string, string][][]) {
      expect((await ok(allowed)).status).toBe(200);
    }
    expectForbiddenOrigin(await ok([['Origin', 'null']]));
    expectForbiddenOrigin(await ok([['Origin', `http://127.0.0.1.evil.example:${new URL(origin).port}`]]));
  });

  it('U4 MCP-Protocol-Version 2026-07-28 on a 2025-11-25 body, and no header on a 2026-07-28 body → 400 HeaderMismatch (-32020) with the request id; nothing runs', async () => {
    const rpc = callOf('whoami');
    const runs = api.sessionLog.runs.length;
    const older = { ...rpc, bodyVersion: '2025-11-25' };
    expectHeaderMismatch(await post('/mcp', older, withHeader(headersOf(older, token('mcp:tools')), 'MCP-Protocol-Version', V2026)));
    expectHeaderMismatch(await post('/mcp', rpc, withHeader(headersOf(rpc, token('mcp:tools')), 'MCP-Protocol-Version', undefined)));
    expect(api.sessionLog.runs.length).toBe(runs);
  });

  it('U5 Mcp-Method tools/list on a tools/call body, and Mcp-Method missing → 400 HeaderMismatch', async () => {
    const rpc = callOf('whoami');
    expectHeaderMismatch(await post('/mcp', rpc, withHeader(headersOf(rpc, token('mcp:tools')), 'Mcp-Method', 'tools/list')));
    expectHeaderMismatch(await post('/mcp', rpc, withHeader(headersOf(rpc, token('mcp:tools')), 'Mcp-Method', undefined)));
  });

  it('U6 Mcp-Name: another tool, missing, another case → 400; surrounding whitespace, a lowercase header name and the Base64 sentinel form → judged normally (403 for purge_orders without admin)', async () => {
    const rpc = callOf('purge_orders');
    const base = headersOf(rpc, token('mcp:tools'));
    for (const value of ['ping', undefined, 'PURGE_ORDERS']) expectHeaderMismatch(await post('/mcp', rpc, withHeader(base, 'Mcp-Name', value)));
    const b64 = `=?base64?${Buffer.from('purge_orders').toString('base64')}?=`;
    for (const headers of [withHeader(base, 'Mcp-Name', ' purge_orders '), withHeader(base, 'mcp-name', 'purge_orders'), withHeader(base, 'Mcp-Name', b64)]) {
      expectOutcome(await post('/mcp', rpc, headers), '403:mcp:tools admin', prm);
    }
  });

  it('U7 header spoofing: (a) Mcp-Name ping on a purge_orders body → 400, never the scope decision; (b) consistent → 403 IS(mcp:tools admin); (c) a 2025-11-25 request with Mcp-Name ping → 403 IS(mcp:tools admin), the tool name comes from the body', async () => {
    const rpc = callOf('purge_orders');
    const sent = token('mcp:tools');
    const spoofed = await post('/mcp', rpc, withHeader(headersOf(rpc, sent), 'Mcp-Name', 'ping'));
    expectHeaderMismatch(spoofed);
    expect(spoofed.text).not.toContain('insufficient_scope');
    expectOutcome(await post('/mcp', rpc, headersOf(rpc, sent)), '403:mcp:tools admin', prm, [sent], api.logger.lines);
    const older = { ...rpc, bodyVersion: null };
    const oldHeaders = withHeader(withHeader(headersOf(older, sent), 'MCP-Protocol-Version', '2025-11-25'), 'Mcp-Name', 'ping');
    const res = await post('/mcp', older, oldHeaders);
    expectOutcome(res, '403:mcp:tools admin', prm, [sent], api.logger.lines);
    expect(res.text).not.toContain('purged');
  });

  it('U8 order of checks: bad Origin → 403; then the mismatch → 400; then no token → 401 with scope="mcp:tools admin" computed from the body; then a token without admin → 403 IS(mcp:tools admin)', async () => {
    const rpc = callOf('purge_orders');
    const mismatched = withHeader(headersOf(rpc), 'Mcp-Name', 'ping');
    expectForbiddenOrigin(await post('/mcp', rpc, [...mismatched, ['Origin', 'https://evil.example']]));
    expectHeaderMismatch(await post('/mcp', rpc, mismatched));
    expectOutcome(await post('/mcp', rpc, headersOf(rpc)), '401∅ scope=mcp:tools admin', prm);
    const expired = zone.issueToken({ aud: resource, scope: 'mcp:tools', sub: 'alice', iat: Math.floor(Date.now() / 1000) - 900, exp: Math.floor(Date.now() / 1000) - 600 });
    expectOutcome(await post('/mcp', rpc, headersOf(rpc, expired)), '401 IT scope=mcp:tools admin', prm, [expired], api.logger.lines);
    expectOutcome(await post('/mcp', rpc, headersOf(rpc, token('mcp:tools'))), '403:mcp:tools admin', prm);
  });

  it('U9 Mcp-Param-Repo: foo with arguments.repo bar, for repo_info declaring x-mcp-header Repo (the MCP SDK 2.x server in an @McpEndpoint() controller) → 400 HeaderMismatch (-32020); the header missing → 400; matching (also as Base64) → served', async () => {
    const rpc = { method: 'tools/call', params: { name: 'repo_info', arguments: { repo: 'bar' } } };
    const sent = zone.issueToken({ aud: `${origin}/sdk2-mcp`, scope: 'read', client_id: 'agent-7', sub: 'alice' });
    const base = headersOf(rpc, sent);
    const post2 = (headers: [string, string][]) => send(api.url, 'POST', '/sdk2-mcp', headers, bodyOf(rpc));
    for (const headers of [[...base, ['Mcp-Param-Repo', 'foo']], base] as [string, string][][]) {
      const res = await post2(headers);
      expectHeaderMismatch(res);
      expect(res.text).not.toContain('stars');
      expect(res.text).not.toContain(sent);
    }
    for (const value of ['bar', `=?base64?${Buffer.from('bar').toString('base64')}?=`]) {
      const served = await post2([...base, ['Mcp-Param-Repo', value]]);
      expect({ status: served.status, text: served.text.slice(0, 300) }).toMatchObject({ status: 200 });
      expect(served.text).toContain('stars');
    }
    expect(api.logger.lines.join('\n')).not.toContain(sent);
  });

  it('U9 an Mcp-Param-* value with a non-ASCII byte or a malformed Base64 sentinel → 400 HeaderMismatch before any token work, on both shapes; a CR in it → 400 from the HTTP parser; nothing runs', async () => {
    const runs = api.sessionLog.runs.length;
    const shapes = [
      { path: '/mcp', rpc: { method: 'tools/call', params: { name: 'whoami', arguments: {} } } },
      { path: '/sdk2-mcp', rpc: { method: 'tools/call', params: { name: 'repo_info', arguments: { repo: 'bar' } } } },
    ];
    for (const { path, rpc } of shapes) {
      for (const value of ['b\u00e4r', '=?base64?SGVsbG8?=', '=?base64?Ym!!Fy?=']) {
        // No token at all: the refusal comes before the token is looked at (a 401 would mean it did not).
        const res = await send(api.url, 'POST', path, [...headersOf(rpc), ['Mcp-Param-Repo', value]], bodyOf(rpc));
        expectHeaderMismatch(res);
        expect(res.text).not.toContain('stars');
      }
      const body = bodyOf(rpc);
      const head = headersOf(rpc, token('mcp:tools')).map(([n, v]) => `${n}: ${v}`).join('\r\n');
      const raw = await sendRaw(api.url, `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${head}\r\nMcp-Param-Repo: b\rar\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      expect(raw.status).toBe(400);
      expect(raw.text).not.toContain('stars');
    }
    expect(api.sessionLog.runs.length).toBe(runs);
  });

  it('U11 a tools/list that names purge_orders (as an admin\'s would) grants nothing: the call without admin → 403 IS(mcp:tools admin)', async () => {
    const list = { method: 'tools/list' };
    const listed = await post('/mcp', list, headersOf(list, token('mcp:tools admin')));
    expect(listed.status).toBe(200);
    expect(listed.text).toContain('purge_orders');
    const rpc = callOf('purge_orders');
    expectOutcome(await post('/mcp', rpc, headersOf(rpc, token('mcp:tools'))), '403:mcp:tools admin', prm);
  });

  it('N12 the MCP SDK transport in an @McpEndpoint() controller, tool sdk_purge declared with admin: without admin → 403 IS(admin) judged from the body, the tool never runs; with admin → served', async () => {
    const sdkPrm = `${origin}/.well-known/oauth-protected-resource/sdk-mcp`;
    const rpc = callOf('sdk_purge');
    const sdkToken = (scope: string) => zone.issueToken({ aud: `${origin}/sdk-mcp`, scope, client_id: 'agent-7', sub: 'alice' });
    const runs = api.sdkAuthInfos.filter((seen) => seen === null).length;
    const sent = sdkToken('read');
    expectOutcome(await post('/sdk-mcp', rpc, headersOf(rpc, sent)), '403:admin', sdkPrm, [sent], api.logger.lines);
    expectOutcome(await post('/sdk-mcp', rpc, headersOf(rpc)), '401∅ scope=admin', sdkPrm);
    expect(api.sdkAuthInfos.filter((seen) => seen === null).length).toBe(runs);
    // A 2025-11-25 request (the SDK 1.x transport speaks no 2026-07-28).
    const older = { ...rpc, bodyVersion: null };
    const served = await post('/sdk-mcp', older, withHeader(headersOf(older, sdkToken('read admin')), 'MCP-Protocol-Version', '2025-11-25'));
    expect({ status: served.status, text: served.text.slice(0, 300) }).toMatchObject({ status: 200 });
    expect(served.text).toContain('purged');
    expect(api.sdkAuthInfos.filter((seen) => seen === null).length).toBe(runs + 1);
  });

  it('U15 a scope refusal of a request that accepts SSE: HTTP 403 with the JSON challenge, no event stream opened', async () => {
    const rpc = callOf('purge_orders');
    const res = await post('/mcp', rpc, headersOf(rpc, token('mcp:tools')));
    expectOutcome(res, '403:mcp:tools admin', prm);
    expect(String(res.headers['content-type'])).not.toContain('text/event-stream');
  });
});

describe.each(ADAPTERS)('MCP caller-filtered tools/list (mcpToolListing: permitted) over %s', (adapter) => {
  let zone: TestZone;
  let filtered: RunningMcpApp;
  let publicHint: RunningMcpApp;
  const list = { method: 'tools/list' };

  beforeAll(async () => {
    zone = await TestZone.start();
    const keycard = { zoneUrl: zone.issuer, mcpToolListing: 'permitted' as const };
    filtered = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), keycard });
    publicHint = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), keycard, cacheHints: { 'tools/list': { cacheScope: 'public', ttlMs: 60_000 } } });
  });
  afterAll(async () => {
    await filtered?.close();
    await publicHint?.close();
    await zone?.stop();
  });

  /** The `tools/list` result `app` answers at `path` to a token with `scope` (a JSON or an SSE answer). */
  async function listed(app: RunningMcpApp, path: string, scope: string): Promise<{ names: string[]; cacheScope?: unknown; ttlMs?: unknown }> {
    const sent = zone.issueToken({ aud: `${app.url}${path}`, scope, client_id: 'agent-7', sub: 'alice' });
    const res = await send(app.url, 'POST', path, headersOf(list, sent), bodyOf(list));
    expect({ status: res.status, text: res.text.slice(0, 300) }).toMatchObject({ status: 200 });
    expect(res.text).not.toContain(sent);
    const message = (res.json ?? JSON.parse(/^data: (.*)$/m.exec(res.text)![1])) as { result: { tools: { name: string }[]; cacheScope?: unknown; ttlMs?: unknown } };
    return { names: message.result.tools.map((t) => t.name), cacheScope: message.result.cacheScope, ttlMs: message.result.ttlMs };
  }

  it('U10 tools/list by a token with mcp:tools and by one with mcp:tools admin: the lists differ (purge_orders only in the second), each cacheScope "private" with ttlMs ≥ 0; the same on the MCP SDK 2.x server (purge_repo)', async () => {
    for (const [path, base, extra, privileged] of [['/mcp', 'mcp:tools', 'admin', 'purge_orders'], ['/sdk2-mcp', 'read', 'admin', 'purge_repo']]) {
      const plain = await listed(filtered, path, base);
      const admin = await listed(filtered, path, `${base} ${extra}`);
      expect(plain.names).not.toContain(privileged);
      expect(admin.names).toContain(privileged);
      expect(admin.names.filter((n) => n !== privileged).sort()).toEqual([...plain.names].sort());
      for (const result of [plain, admin]) {
        expect(result.cacheScope).toBe('private');
        expect(result.ttlMs).toEqual(expect.any(Number));
        expect(result.ttlMs as number).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('U10 the app marks tools/list cacheScope "public": the filtered list is answered "private", with one warning log line', async () => {
    const warnings = () => publicHint.logger.lines.filter((line) => line.includes('cacheScope "public"')).length;
    const before = warnings();
    const result = await listed(publicHint, '/mcp', 'mcp:tools');
    expect(result.names).not.toContain('purge_orders');
    expect(result).toMatchObject({ cacheScope: 'private', ttlMs: 60_000 });
    expect(warnings()).toBe(before + 1);
  });
});

describe.each(ADAPTERS)('MCP sessions and stateless servers over %s', (adapter) => {
  let zone: TestZone;
  let stateful: RunningMcpApp;
  let stateless: RunningMcpApp;

  beforeAll(async () => {
    zone = await TestZone.start();
    stateful = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), stateful: true });
    stateless = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort() });
  });
  afterAll(async () => {
    await stateful?.close();
    await stateless?.close();
    await zone?.stop();
  });

  /** A 2025-11-25 `whoami` call in `session` (no header duty at that revision). */
  function inSession(url: string, session: string, token?: string): Promise<HttpAnswer> {
    const headers: [string, string][] = [
      ['Content-Type', 'application/json'],
      ['Accept', 'application/json, text/event-stream'],
      ['MCP-Protocol-Version', '2025-11-25'],
      ['Mcp-Session-Id', session],
    ];
    if (token !== undefined) headers.push(['Authorization', `Bearer ${token}`]);
    return send(url, 'POST', '/mcp', headers, JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami', arguments: {} } }));
  }

  it('U12 session S of alice (agent app-a): (a) alice with a refreshed token, more scopes → served in S; (b) alice through app-b → 404 like an unknown session; (c) S and no token → 401∅; (d) alice\'s expired token → 401 IT', async () => {
    const url = `${stateful.url}/mcp`;
    const prm = `${stateful.url}/.well-known/oauth-protected-resource/mcp`;
    const alice = (claims: Record<string, unknown> = {}) => zone.issueToken({ aud: url, scope: 'mcp:tools', client_id: 'app-a', sub: 'alice', ...claims });
    const client = new Client({ name: 'u12', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${alice()}` } } });
    await client.connect(transport);
    try {
      const session = transport.sessionId!;
      const refreshed = alice({ scope: 'mcp:tools admin', jti: randomUUID() });
      const served = await inSession(stateful.url, session, refreshed);
      expect(served.status).toBe(200);
      expect(served.text).toContain('admin');
      const otherAgent = await inSession(stateful.url, session, alice({ client_id: 'app-b' }));
      const unknown = await inSession(stateful.url, randomUUID(), alice({ client_id: 'app-b' }));
      expect(otherAgent.status).toBe(404);
      expect({ status: otherAgent.status, text: otherAgent.text }).toEqual({ status: unknown.status, text: unknown.text });
      expectOutcome(await inSession(stateful.url, session), '401∅ scope=mcp:tools', prm);
      const expired = alice({ iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 300 });
      expectOutcome(await inSession(stateful.url, session, expired), '401 IT scope=mcp:tools', prm, [expired], stateful.logger.lines);
      expect(toolJson(await client.callTool({ name: 'whoami', arguments: {} }))).toMatchObject({ agent: 'app-a', user: 'alice' });
    } finally {
      await client.close();
    }
  });

  it('U13 stateless server, valid token: GET and DELETE /mcp → 405; a POST with a stale Mcp-Session-Id → 200, the header ignored (no session minted or echoed)', async () => {
    const url = `${stateless.url}/mcp`;
    const sent = zone.issueToken({ aud: url, scope: 'mcp:tools', client_id: 'app-a', sub: 'alice' });
    for (const method of ['GET', 'DELETE']) {
      const res = await send(stateless.url, method, '/mcp', [['Authorization', `Bearer ${sent}`], ['Accept', 'text/event-stream']]);
      expect({ method, status: res.status }).toEqual({ method, status: 405 });
    }
    const stale = randomUUID();
    const res = await inSession(stateless.url, stale, sent);
    expect(res.status).toBe(200);
    expect(res.headers['mcp-session-id']).toBeUndefined();
  });
});

describe.each(ADAPTERS)('Zone recovery on an MCP server over %s', (adapter) => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const list = { method: 'tools/list' };

  // 4 s rather than the row's 3 s: the back-off's own retries fall at about 1 s and 3 s after boot, so
  // at 4 s only an on-demand retry can see the zone (the next background one is due at 7 s).
  it('U16 the API boots while the zone is not up; the zone starts 4 s later; a valid token 0.2 s after that is served (no 30 s back-off)', async () => {
    const zonePort = await freePort();
    const port = await freePort();
    const api = await startMcpApp({ adapter, zoneUrl: `http://127.0.0.1:${zonePort}`, port });
    try {
      await sleep(4_000);
      const zone = await TestZone.start({ port: zonePort });
      try {
        await sleep(200);
        const sent = zone.issueToken({ aud: `${api.url}/mcp`, scope: 'mcp:tools', sub: 'alice' });
        const res = await postTo(api.url, list, headersOf(list, sent));
        expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: 200 });
      } finally {
        await zone.stop();
      }
    } finally {
      await api.close();
    }
  });

  it('U16 1 000 requests while the zone fails: 503 + Retry-After each, and at most one zone attempt per 500 ms floor', async () => {
    const zone = await TestZone.start();
    zone.faults.metadata = { kind: 'status', status: 500 };
    const api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort() });
    try {
      const sent = zone.issueToken({ aud: `${api.url}/mcp`, scope: 'mcp:tools', sub: 'alice' });
      const before = zone.counts.metadata;
      const started = Date.now();
      for (let batch = 0; batch < 10; batch++) {
        const answers = await Promise.all(Array.from({ length: 100 }, () => postTo(api.url, list, headersOf(list, sent))));
        for (const res of answers) expect({ status: res.status, retryAfter: Number(res.headers['retry-after']) >= 1 }).toEqual({ status: 503, retryAfter: true });
      }
      const floors = Math.ceil((Date.now() - started) / 500);
      // One attempt per floor interval, plus the background retry loop's own (at most one per interval too).
      expect(zone.counts.metadata - before).toBeLessThanOrEqual(2 * floors + 1);
    } finally {
      await api.close();
      await zone.stop();
    }
  }, 120_000);
});

/** Carts behind state handles, the way a stateless MCP server keeps state between calls (U14). */
function cartTools(carts: McpStateHandles<string[]>) {
  const unknownCart = { isError: true, content: [{ type: 'text', text: 'unknown cart' }] };
  /** The call's arguments, as the MCP request carries them. */
  const argsOf = (context: { mcpRequest: { params?: { arguments?: Record<string, unknown> } } }) => context.mcpRequest.params?.arguments ?? {};

  @McpController()
  class CartTools {
    @Tool({ name: 'cart_create', description: 'A new cart, as a handle' })
    create(@Agent() agent: AgentContext) {
      return { cart: carts.mint(agent, []) };
    }

    @Tool({ name: 'cart_add', description: 'Adds an item to a cart', parameters: z.object({ cart: z.string(), item: z.string() }) })
    add(@Agent() agent: AgentContext, @Ctx() context: { mcpRequest: { params?: { arguments?: Record<string, unknown> } } }) {
      const { cart, item } = argsOf(context) as { cart: string; item: string };
      const items = carts.get(agent, cart);
      if (items === undefined) return unknownCart;
      items.push(item);
      return { items };
    }
  }
  return CartTools;
}

describe.each(ADAPTERS)('MCP state handles over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let clock = Date.now();
  const carts = new McpStateHandles<string[]>({ ttlSeconds: 60, now: () => clock });

  beforeAll(async () => {
    zone = await TestZone.start();
    api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), tools: [cartTools(carts)] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  /** A 2026-07-28 `tools/call`; the tool's result (`result`). */
  async function call(token: string, name: string, args: Record<string, unknown>): Promise<{ isError?: boolean; content: { text: string }[]; text: string }> {
    const rpc = { method: 'tools/call', params: { name, arguments: args } };
    const res = await postTo(api.url, rpc, [...headersOf(rpc, token), ['Accept', 'application/json']]);
    expect({ status: res.status, text: res.text.slice(0, 300) }).toMatchObject({ status: 200 });
    const result = ((res.json ?? JSON.parse(/data: (.*)/.exec(res.text)![1])) as { result: { isError?: boolean; content: { text: string }[] } }).result;
    return { ...result, text: JSON.stringify(result) };
  }

  it('U14 alice\'s cart handle: bob gets "unknown cart", byte-identical to a random handle, and alice\'s cart is unchanged; alice with a new token is served; a changed handle and an expired one are unknown; handles carry ≥ 128 random bits', async () => {
    const token = (sub: string, clientId = 'app-a') => zone.issueToken({ aud: `${api.url}/mcp`, scope: 'mcp:tools', sub, client_id: clientId, jti: randomUUID() });
    const created = JSON.parse((await call(token('alice'), 'cart_create', {})).content[0].text) as { cart: string };
    const handle = created.cart;
    expect(Buffer.from(handle, 'base64url').length * 8).toBeGreaterThanOrEqual(128);

    const bob = await call(token('bob', 'app-b'), 'cart_add', { cart: handle, item: 'bob-item' });
    const random = await call(token('bob', 'app-b'), 'cart_add', { cart: randomUUID(), item: 'bob-item' });
    expect(bob.isError).toBe(true);
    expect(bob.text).toBe(random.text);
    expect(bob.text).toContain('unknown cart');

    const alice = await call(token('alice'), 'cart_add', { cart: handle, item: 'apple' }); // a fresh token (new jti)
    expect(alice.text).toContain('apple');
    expect(alice.text).not.toContain('bob-item');

    const changed = handle.slice(0, -1) + (handle.endsWith('A') ? 'B' : 'A');
    expect((await call(token('alice'), 'cart_add', { cart: changed, item: 'pear' })).text).toBe(random.text);
    clock += 61_000;
    expect((await call(token('alice'), 'cart_add', { cart: handle, item: 'pear' })).text).toBe(random.text);
  });
});

describe.each(ADAPTERS)('MCP Origin check in development mode over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningMcpApp;

  beforeAll(async () => {
    zone = await TestZone.start();
    api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), developmentMode: true });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('U3 no resource configured, bound to 127.0.0.1 (conformance dns-rebinding-protection): Host and Origin evil.example.com → 403 from the Origin check; localhost Host and Origin → served', async () => {
    const port = new URL(api.url).port;
    const rpc = { method: 'tools/list' };
    const sent = zone.issueToken({ aud: [`http://localhost:${port}`, `http://localhost:${port}/mcp`], scope: 'mcp:tools', sub: 'alice' });
    const evil = await postTo(api.url, rpc, [...headersOf(rpc, sent), ['Host', 'evil.example.com'], ['Origin', 'http://evil.example.com']]);
    expectForbiddenOrigin(evil);
    const local = await postTo(api.url, rpc, [...headersOf(rpc, sent), ['Host', `localhost:${port}`], ['Origin', `http://localhost:${port}`]]);
    expect({ status: local.status, text: local.text.slice(0, 200) }).toMatchObject({ status: 200 });
  });
});

function postTo(url: string, rpc: Rpc, headers: [string, string][]): Promise<HttpAnswer> {
  return send(url, 'POST', '/mcp', headers, bodyOf(rpc));
}
