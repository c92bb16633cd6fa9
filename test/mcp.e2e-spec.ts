/**
 * MCP servers protected by the module (catalogue §N, N11–N14): the real MCP TypeScript SDK client
 * against a real Nest app built with @rekog/mcp-nest and with the SDK's Streamable HTTP transport in
 * a controller, tokens from a real TestZone, over loopback. No mocked MCP.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { TestZone, TestZoneMcpLogin } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { freePort } from './support/free-port.js';
import { send } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { resourcesOf, startMcpApp, toolJson, type RunningMcpApp } from './support/mcp-app.js';

/** The `scope` claim of an access token the zone issued. */
function scopeOf(token: string): unknown {
  return (JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as { scope?: unknown }).scope;
}



/** The real SDK client over Streamable HTTP with a fixed bearer token (no OAuth provider). */
async function connectClient(url: string, token?: string): Promise<Client> {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

/** One JSON-RPC `tools/call` POSTed as the SDK client would, for the HTTP status and headers. */
function callTool(url: string, name: string, token?: string) {
  const headers: [string, string][] = [
    ['Content-Type', 'application/json'],
    ['Accept', 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', '2025-06-18'],
  ];
  if (token !== undefined) headers.push(['Authorization', `Bearer ${token}`]);
  return send(url, 'POST', new URL(url).pathname, headers, JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: {} } }));
}

describe.each(ADAPTERS)('MCP servers over %s', (adapter) => {
  let zone: TestZone;
  let resource: string;
  let prm: string;
  const token = (scope: string, claims: Record<string, unknown> = {}) =>
    zone.issueToken({ aud: resource, scope, client_id: 'agent-7', sub: 'alice', sid: 'session-42', ...claims });

  beforeAll(async () => {
    zone = await TestZone.start();
  });
  afterAll(async () => {
    await zone?.stop();
  });

  describe.each([false, true])('mcp-nest, inheritAppConfig: %s', (inheritAppConfig) => {
    let api: RunningMcpApp;

    beforeAll(async () => {
      const port = await freePort();
      resource = `http://127.0.0.1:${port}/mcp`;
      prm = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
      api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port, inheritAppConfig });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('N12 @RequireScopes(admin) tool, token without admin → 403 insufficient_scope naming admin (with the endpoint\'s mcp:tools), the tool never runs', async () => {
      const sent = token('mcp:tools');
      const res = await callTool(`${api.url}/mcp`, 'purge_orders', sent);
      // All the request needs, so the client steps up once (RFC 6750 §3 `scope`).
      expectOutcome(res, '403:mcp:tools admin', prm, [sent], api.logger.lines);
      expect(res.text).not.toContain('purged');
    });

    it('N12 the same refusal through the real SDK client: it is told 403 insufficient_scope, nothing runs', async () => {
      const sent = token('mcp:tools');
      const client = await connectClient(`${api.url}/mcp`, sent);
      try {
        const refused = await client.callTool({ name: 'purge_orders', arguments: {} }).catch((error: unknown) => error);
        expect(refused).toMatchObject({ code: 403, message: expect.stringContaining('insufficient_scope') });
      } finally {
        await client.close();
      }
      expect(api.logger.lines.some((line) => line.includes(sent))).toBe(false);
    });

    it('N12 token with admin → the admin tool runs, attributed to agent and user', async () => {
      const sent = token('mcp:tools admin');
      const client = await connectClient(`${api.url}/mcp`, sent);
      try {
        const result = await client.callTool({ name: 'purge_orders', arguments: {} });
        expect(result.isError).toBeFalsy();
        expect(toolJson(result)).toEqual({ purged: true, by: 'alice' });
        const who = await client.callTool({ name: 'whoami', arguments: {} });
        expect(toolJson(who)).toEqual({ agent: 'agent-7', user: 'alice', scopes: ['mcp:tools', 'admin'] });
      } finally {
        await client.close();
      }
      expect(api.logger.lines.some((line) => line.includes(sent))).toBe(false);
    });

    it('N12 an undecorated tool with a valid token runs (no blanket refusal of rpc calls)', async () => {
      const client = await connectClient(`${api.url}/mcp`, token('mcp:tools'));
      try {
        const tools = await client.listTools();
        expect(tools.tools.map((t) => t.name).sort()).toEqual(['ping', 'purge_orders', 'whoami']);
        expect(toolJson(await client.callTool({ name: 'whoami', arguments: {} }))).toMatchObject({ agent: 'agent-7', user: 'alice' });
      } finally {
        await client.close();
      }
    });

    it('N12 @Public() tool without a token → served; any other call without a token → 401 with resource_metadata, naming all the call needs (the tool\'s scopes too: Q12, O23)', async () => {
      const res = await callTool(`${api.url}/mcp`, 'ping');
      expect(res.status).toBe(200);
      expect(res.text).toContain('pong');
      expectOutcome(await callTool(`${api.url}/mcp`, 'whoami'), '401∅ scope=mcp:tools', prm);
      // Every scope the call needs, the tool's included, computed from the body (U8, Q12).
      expectOutcome(await callTool(`${api.url}/mcp`, 'purge_orders'), '401∅ scope=mcp:tools admin', prm);
    });

    it('N12 a tool added at run time through mcp-nest\'s registerTool({ requiredScopes: [admin] }) (no Nest handler, unseen by the guard) never runs for a token without admin; with admin it does; nothing leaked', async () => {
      const runs: string[] = [];
      const name = `dyn_purge_${inheritAppConfig}`;
      api.strategy.registerTool({
        name, description: 'Added at run time (admins only)', requiredScopes: ['admin'],
        handler: () => { runs.push(name); return { content: [{ type: 'text', text: '{"purged":true}' }] }; },
      });
      const lacking = token('mcp:tools');
      const refused = await callTool(`${api.url}/mcp`, name, lacking);
      expect(refused.json).toMatchObject({ jsonrpc: '2.0', id: 7, error: { message: `Tool '${name}' requires scopes: admin` } });
      expect(runs).toEqual([]);
      expect(refused.text).not.toContain(lacking);
      const served = await callTool(`${api.url}/mcp`, name, token('mcp:tools admin'));
      expect(served.status).toBe(200);
      expect(runs).toEqual([name]);
      expect(api.logger.lines.some((line) => line.includes(lacking))).toBe(false);
    });

    it('N12 a JSON-RPC batch reaching the tool pipeline is judged per tool: the admin tool is refused inside, naming admin', async () => {
      const sent = token('mcp:tools');
      const body = JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'purge_orders', arguments: {} } }]);
      const res = await send(`${api.url}`, 'POST', '/mcp', [
        ['Content-Type', 'application/json'],
        ['Accept', 'application/json, text/event-stream'],
        ['MCP-Protocol-Version', '2025-03-26'],
        ['Authorization', `Bearer ${sent}`],
      ], body);
      expect(res.status).toBe(200);
      expect(res.json).toEqual({
        jsonrpc: '2.0',
        id: 1,
        result: { isError: true, content: [{ type: 'text', text: 'insufficient_scope: this tool requires scope "admin"' }] },
      });
      expect(res.text).not.toContain(sent);
      expect(api.logger.lines.some((line) => line.includes(sent))).toBe(false);
    });
  });

  describe('MCP SDK transport in a Nest controller', () => {
    let api: RunningMcpApp;

    beforeAll(async () => {
      const port = await freePort();
      resource = `http://127.0.0.1:${port}/sdk-mcp`;
      api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port });
    });
    afterAll(async () => {
      await api?.close();
    });

    it('N11 the tool receives extra.authInfo in the SDK AuthInfo shape (token, clientId, scopes, expiresAt in seconds, resource URL, extra with user, session, actor)', async () => {
      const exp = Math.floor(Date.now() / 1000) + 600;
      const act = { sub: 'orchestrator', client_id: 'planner' };
      const sent = token('mcp:tools', { exp, act });
      const client = await connectClient(`${api.url}/sdk-mcp`, sent);
      try {
        const result = await client.callTool({ name: 'sdk_whoami', arguments: {} });
        expect(toolJson(result)).toEqual({ clientId: 'agent-7', subject: 'alice', sessionId: 'session-42' });
        // And once more: the second request is a verified-token cache hit.
        await client.callTool({ name: 'sdk_whoami', arguments: {} });
      } finally {
        await client.close();
      }
      const [info, again] = api.sdkAuthInfos.slice(-2);
      expect(info).toMatchObject({ token: sent, clientId: 'agent-7', scopes: ['mcp:tools'], expiresAt: exp });
      expect(info!.resource).toBeInstanceOf(URL);
      expect(info!.resource.href).toBe(new URL(resource).href);
      expect(info!.extra).toMatchObject({ subject: 'alice', sessionId: 'session-42', actor: { subject: 'orchestrator', clientId: 'planner' } });
      expect(again).toBe(info); // built once per token
      expect(api.logger.lines.some((line) => line.includes(sent))).toBe(false);
    });

    it('N11 req.auth is set on MCP endpoints only: an ordinary route never sees the raw token', async () => {
      const res = await send(api.url, 'GET', '/plain', [['Authorization', `Bearer ${token('mcp:tools', { aud: `${api.url}/plain` })}`]]);
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ hasAuth: false });
    });

    it('N12 T26 a JSON-RPC batch naming sdk_purge (admin, declared with @McpEndpoint({ tools })) on an SDK endpoint, which has no tool pipeline: one HTTP 403 naming admin, the tool never runs, nothing leaked', async () => {
      const sent = token('mcp:tools', { aud: `${api.url}/sdk-mcp` });
      const message = (id: number, name: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
      for (const [version, batch] of [
        ['2025-03-26', [message(1, 'sdk_purge')]],
        ['2025-03-26', [message(1, 'sdk_whoami'), message(2, 'sdk_purge')]],
        ['2025-06-18', [message(1, 'sdk_purge')]],
      ] as const) {
        const before = api.sdkAuthInfos.length;
        const res = await send(api.url, 'POST', '/sdk-mcp', [
          ['Content-Type', 'application/json'],
          ['Accept', 'application/json, text/event-stream'],
          ['MCP-Protocol-Version', version],
          ['Authorization', `Bearer ${sent}`],
        ], JSON.stringify(batch));
        expectOutcome(res, '403:admin', `${api.url}/.well-known/oauth-protected-resource/sdk-mcp`, [sent], api.logger.lines);
        expect(api.sdkAuthInfos.length).toBe(before);
      }
    });

    it('N11 without a token the SDK transport is never reached: 401 with the challenge', async () => {
      const before = api.sdkAuthInfos.length;
      expectOutcome(await callTool(`${api.url}/sdk-mcp`, 'sdk_whoami'), '401∅', `${api.url}/.well-known/oauth-protected-resource/sdk-mcp`);
      expect(api.sdkAuthInfos.length).toBe(before);
    });
  });

  describe('the MCP client flow, from nothing', () => {
    let api: RunningMcpApp;
    let oauthZone: TestZone;
    let mcpUrl: string;
    const redirect = 'http://127.0.0.1:9/callback'; // never contacted: the provider reads the code off the redirect

    beforeAll(async () => {
      const port = await freePort();
      mcpUrl = `http://127.0.0.1:${port}/mcp`;
      oauthZone = await TestZone.start({
        resources: Object.fromEntries(resourcesOf(port).map((r) => [r, ['mcp:tools', 'admin']])),
        clients: [{ clientId: 'mcp-agent', public: true, redirectUris: [redirect] }],
        devUser: { sub: 'dev-user' },
      });
      api = await startMcpApp({ adapter, zoneUrl: oauthZone.issuer, port });
    });
    afterAll(async () => {
      await api?.close();
      await oauthZone?.stop();
    });

    it('N13 SDK client: 401 → resource metadata → zone metadata → authorization code + PKCE with resource, asking exactly the challenge\'s scope → token → tool result; then a step-up to the admin tool', async () => {
      const provider = new TestZoneMcpLogin('mcp-agent', redirect);
      const first = new Client({ name: 'test-agent', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
      await expect(first.connect(transport)).rejects.toBeInstanceOf(UnauthorizedError);
      const [signIn] = provider.authorizations;
      expect(Object.fromEntries(signIn.searchParams)).toMatchObject({
        client_id: 'mcp-agent',
        response_type: 'code',
        code_challenge_method: 'S256',
        resource: mcpUrl,
        scope: 'mcp:tools', // the 401's scope, not scopes_supported
      });
      expect(signIn.origin).toBe(oauthZone.origin);
      await transport.finishAuth(provider.code!);
      expect(oauthZone.counts.metadata).toBeGreaterThan(0); // found through the resource metadata's authorization_servers
      expect(scopeOf(provider.accessToken!)).toBe('mcp:tools');

      const client = new Client({ name: 'test-agent', version: '1.0.0' });
      const signedIn = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
      await client.connect(signedIn);
      try {
        expect((await client.listTools()).tools.map((t) => t.name)).toContain('purge_orders');
        expect(toolJson(await client.callTool({ name: 'whoami', arguments: {} }))).toEqual({ agent: 'mcp-agent', user: 'dev-user', scopes: ['mcp:tools'] });

        // Step-up: the admin tool answers 403 insufficient_scope; the SDK signs in again for what the challenge names.
        await expect(client.callTool({ name: 'purge_orders', arguments: {} })).rejects.toBeInstanceOf(UnauthorizedError);
        const stepUp = provider.authorizations[1];
        expect(Object.fromEntries(stepUp.searchParams)).toMatchObject({ resource: mcpUrl, scope: 'mcp:tools admin', code_challenge_method: 'S256' });
        await signedIn.finishAuth(provider.code!);
        expect(scopeOf(provider.accessToken!)).toBe('mcp:tools admin');
        expect(toolJson(await client.callTool({ name: 'purge_orders', arguments: {} }))).toEqual({ purged: true, by: 'dev-user' });
      } finally {
        await client.close();
      }
      expect(provider.authorizations).toHaveLength(2);
      const token = provider.accessToken!;
      expect(api.logger.lines.some((line) => line.includes(token))).toBe(false);
    });
  });

  it('N14 mcp-nest mounted the quick-start way (self-mounted on the HTTP adapter) → the bootstrap fails, saying how to mount it behind the guard', async () => {
    const port = await freePort();
    await expect(startMcpApp({ adapter, zoneUrl: zone.issuer, port, mount: 'self' })).rejects.toThrow(/McpHttpControllerFor\(transport\)/);
    // Nothing answers on the port: no unguarded endpoint was left behind.
    await expect(send(`http://127.0.0.1:${port}`, 'POST', '/mcp', [], '{}')).rejects.toThrow(/ECONNREFUSED/);
  });
});
