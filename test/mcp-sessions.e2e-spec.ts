/**
 * MCP sessions and streams belong to the principal that opened them (catalogue O13, O16 b, O11;
 * decisions Q18–Q20): @rekog/mcp-nest in stateful mode and the MCP SDK's stateful transport in an
 * `@McpEndpoint()` controller, the real SDK client, tokens from real TestZones, over loopback. The
 * byte-for-byte comparisons use plain HTTP requests, so nothing between the wire and the test
 * normalises the answers.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';
import { KeycardRevocationModule, RevocationService } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { freePort } from './support/free-port.js';
import { send, type HttpAnswer } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { startMcpApp, toolJson, type RunningMcpApp } from './support/mcp-app.js';

const WHOAMI = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'whoami', arguments: {} } };

/** The SDK client over Streamable HTTP with a fixed bearer token; its session id once connected. */
async function connectClient(url: string, token: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  await client.connect(transport);
  return { client, transport };
}

/** One request to an MCP endpoint in `session`, as the SDK client would send it (a JSON-RPC POST, or a bare GET / DELETE). */
function inSession(url: string, init: { method?: 'POST' | 'DELETE' | 'GET'; token: string; session: string; body?: unknown }): Promise<HttpAnswer> {
  const method = init.method ?? 'POST';
  const headers: [string, string][] = [
    ['Accept', method === 'GET' ? 'text/event-stream' : 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', '2025-11-25'],
    ['Mcp-Session-Id', init.session],
    ['Authorization', `Bearer ${init.token}`],
  ];
  if (init.body !== undefined) headers.push(['Content-Type', 'application/json']);
  return send(url, method, new URL(url).pathname, headers, init.body === undefined ? undefined : JSON.stringify(init.body));
}

/** Everything of an answer a client can tell apart, but the clock (`Date`). */
function comparable(res: HttpAnswer) {
  const { date: _date, ...headers } = res.headers;
  return { status: res.status, headers, text: res.text };
}

/** The audit records the module wrote. */
function auditRecords(lines: readonly string[]): Record<string, unknown>[] {
  return lines.filter((line) => line.includes('"keycard.audit"')).map((line) => JSON.parse(line) as Record<string, unknown>);
}

const sleepUntil = (at: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));

/** The servers of the row: mcp-nest (the endpoint requires `mcp:tools`) and the SDK transport. */
const SERVERS = [
  ['mcp-nest stateful', '/mcp'],
  ['the SDK stateful transport in an @McpEndpoint() controller', '/sdk-session'],
] as const;

describe.each(ADAPTERS)('MCP sessions over %s', (adapter) => {
  let zone: TestZone;

  beforeAll(async () => {
    zone = await TestZone.start();
  });
  afterAll(async () => {
    await zone?.stop();
  });

  describe('one zone', () => {
    let api: RunningMcpApp;

    beforeAll(async () => {
      api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), stateful: true, auditLog: true });
    });
    afterAll(async () => {
      await api?.close();
    });

    it.each(SERVERS)('O13 %s: bob\'s tools/call and DELETE in alice\'s session → 404 byte-identical to an unknown session, the tool never runs for bob, alice\'s session survives', async (_name, path) => {
      const url = `${api.url}${path}`;
      const claims = { aud: url, scope: 'mcp:tools' };
      const alice = zone.issueToken({ ...claims, client_id: 'agent-a', sub: 'alice' });
      const bob = zone.issueToken({ ...claims, client_id: 'agent-b', sub: 'bob' });
      const { client, transport } = await connectClient(url, alice);
      try {
        const session = transport.sessionId!;
        expect(session).toEqual(expect.any(String));
        const auditBefore = auditRecords(api.logger.lines).length;

        const hijack = await inSession(url, { token: bob, session, body: WHOAMI });
        const unknown = await inSession(url, { token: bob, session: randomUUID(), body: WHOAMI });
        expect(hijack.status).toBe(404);
        expect(hijack.headers['www-authenticate']).toBeUndefined();
        expect(comparable(hijack)).toEqual(comparable(unknown));

        const ended = await inSession(url, { method: 'DELETE', token: bob, session });
        const endedUnknown = await inSession(url, { method: 'DELETE', token: bob, session: randomUUID() });
        expect(ended.status).toBe(404);
        expect(comparable(ended)).toEqual(comparable(endedUnknown));

        // The standalone stream of alice's session is not bob's either.
        expect((await inSession(url, { method: 'GET', token: bob, session })).status).toBe(404);

        expect(api.sessionLog.runs).not.toContain('whoami:bob');
        expect(toolJson(await client.callTool({ name: 'whoami', arguments: {} }))).toMatchObject({ agent: 'agent-a', user: 'alice' });

        const refused = auditRecords(api.logger.lines).slice(auditBefore).filter((record) => record.reason === 'session_principal_mismatch');
        expect(refused).toEqual([
          expect.objectContaining({ method: 'POST', status: 404, agent: 'agent-b', user: 'bob' }),
          expect.objectContaining({ method: 'DELETE', status: 404, agent: 'agent-b', user: 'bob' }),
          expect.objectContaining({ method: 'GET', status: 404, agent: 'agent-b', user: 'bob' }),
        ]);
        for (const res of [hijack, ended]) expect(res.text).not.toContain(session);
      } finally {
        await client.close();
      }
      expect(api.logger.lines.some((line) => line.includes(alice) || line.includes(bob))).toBe(false);
    });

    it('O13 mcp-nest stateful: a tokenless call of a @Public() tool in alice\'s session → 404 byte-identical to an unknown session (a session is no one else\'s, signed in or not)', async () => {
      const url = `${api.url}/mcp`;
      const { client, transport } = await connectClient(url, zone.issueToken({ aud: url, scope: 'mcp:tools', client_id: 'agent-a', sub: 'alice' }));
      try {
        const ping = (session: string) =>
          send(url, 'POST', '/mcp', [
            ['Content-Type', 'application/json'],
            ['Accept', 'application/json, text/event-stream'],
            ['MCP-Protocol-Version', '2025-11-25'],
            ['Mcp-Session-Id', session],
          ], JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ping', arguments: {} } }));
        const intruding = await ping(transport.sessionId!);
        expect(intruding.status).toBe(404);
        expect(comparable(intruding)).toEqual(comparable(await ping(randomUUID())));
        expect(auditRecords(api.logger.lines).at(-2)).toMatchObject({ status: 404, reason: 'session_principal_mismatch' });
        expect(auditRecords(api.logger.lines).at(-2)).not.toHaveProperty('agent');
        expect(toolJson(await client.callTool({ name: 'whoami', arguments: {} }))).toMatchObject({ agent: 'agent-a', user: 'alice' });
      } finally {
        await client.close();
      }
    });

    it.each(SERVERS)('O13 %s: alice\'s fresh token (same principal, new jti) keeps her session; her own DELETE ends it', async (_name, path) => {
      const url = `${api.url}${path}`;
      const claims = { aud: url, scope: 'mcp:tools', client_id: 'agent-a', sub: 'alice' };
      const { client, transport } = await connectClient(url, zone.issueToken(claims));
      const session = transport.sessionId!;
      try {
        const renewed = zone.issueToken(claims);
        expect((await inSession(url, { token: renewed, session, body: WHOAMI })).status).toBe(200);
        expect((await inSession(url, { method: 'DELETE', token: renewed, session })).status).toBe(200);
        expect((await inSession(url, { token: renewed, session, body: WHOAMI })).status).toBe(404);
      } finally {
        await client.close();
      }
    });
  });

  describe('two zones', () => {
    let z2: TestZone;
    let api: RunningMcpApp;

    beforeAll(async () => {
      z2 = await TestZone.start();
      api = await startMcpApp({ adapter, zoneUrl: zone.issuer, zones: [zone.issuer, z2.issuer], port: await freePort(), stateful: true });
    });
    afterAll(async () => {
      await api?.close();
      await z2?.stop();
    });

    it.each(SERVERS)('O16 (b) %s: a session opened with a Z1 token, used with a Z2 token of the same jti, sid, sub and client_id → 404 byte-identical to an unknown session', async (_name, path) => {
      const url = `${api.url}${path}`;
      const claims = { aud: url, scope: 'mcp:tools', client_id: 'agent-a', sub: 'alice', sid: 'sid-1', jti: randomUUID() };
      const fromZ1 = zone.issueToken(claims);
      const fromZ2 = z2.issueToken(claims);
      const { client, transport } = await connectClient(url, fromZ1);
      try {
        const session = transport.sessionId!;
        const crossed = await inSession(url, { token: fromZ2, session, body: WHOAMI });
        const unknown = await inSession(url, { token: fromZ2, session: randomUUID(), body: WHOAMI });
        expect(crossed.status).toBe(404);
        expect(comparable(crossed)).toEqual(comparable(unknown));
        expect((await inSession(url, { token: fromZ1, session, body: WHOAMI })).status).toBe(200);
      } finally {
        await client.close();
      }
    });
  });

  describe('streams end at expiry (clockToleranceSeconds: 0)', () => {
    let api: RunningMcpApp;
    let url: string;
    /** `Ts`: exp = now + 2 s; its expiry in ms. */
    const shortToken = () => {
      const exp = Math.floor(Date.now() / 1000) + 2;
      return { token: zone.issueToken({ aud: url, scope: 'mcp:tools', client_id: 'agent-a', sub: 'alice', exp }), expMs: exp * 1000 };
    };
    const closedBetween = (method: string, from: number, to: number) => api.sessionLog.closed.filter((c) => c.method === method && c.at >= from && c.at <= to);

    beforeAll(async () => {
      api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), stateful: true, clockToleranceSeconds: 0 });
      url = `${api.url}/sdk-session`;
      // Keys fetched and code warm before the clock starts running on a 2 s token.
      const { client } = await connectClient(url, zone.issueToken({ aud: url, scope: 'mcp:tools' }));
      await client.close();
    });
    afterAll(async () => {
      await api?.close();
    });

    it('O11 the SDK standalone GET SSE stream: 0 late events, closed at expiry; the next POST with Ts → 401 invalid_token', async () => {
      const { token, expMs } = shortToken();
      const ticks: number[] = [];
      const { client, transport } = await connectClient(url, token);
      client.onerror = () => undefined; // the client's reconnection of the closed stream is refused too
      client.setNotificationHandler(LoggingMessageNotificationSchema, () => void ticks.push(Date.now()));
      try {
        await client.callTool({ name: 'start_ticks', arguments: {} });
        await sleepUntil(expMs + 1500);
        expect(ticks.filter((at) => at <= expMs).length).toBeGreaterThan(0);
        expect(ticks.filter((at) => at > expMs + 500)).toEqual([]);
        expect(closedBetween('GET', expMs, expMs + 500)).toHaveLength(1);

        await expect(client.callTool({ name: 'whoami', arguments: {} })).rejects.toMatchObject({ code: 401 });
        const next = await inSession(url, { token, session: transport.sessionId!, body: WHOAMI });
        expectOutcome(next, '401 IT', `${api.url}/.well-known/oauth-protected-resource/sdk-session`, [token], api.logger.lines);
      } finally {
        await client.close();
      }
    });

    it('O11 mcp-nest stateful: its standalone GET SSE stream ends at expiry; the next POST with Ts → 401 invalid_token', async () => {
      const mcpUrl = `${api.url}/mcp`;
      const exp = Math.floor(Date.now() / 1000) + 2;
      const token = zone.issueToken({ aud: mcpUrl, scope: 'mcp:tools', client_id: 'agent-a', sub: 'alice', exp });
      const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };
      const opened = await send(mcpUrl, 'POST', '/mcp', [
        ['Content-Type', 'application/json'],
        ['Accept', 'application/json, text/event-stream'],
        ['Authorization', `Bearer ${token}`],
      ], JSON.stringify(initialize));
      const session = opened.headers['mcp-session-id'] as string;
      expect(session).toEqual(expect.any(String));
      await inSession(mcpUrl, { token, session, body: { jsonrpc: '2.0', method: 'notifications/initialized' } });

      // Resolves when the server ends the stream.
      const stream = await inSession(mcpUrl, { method: 'GET', token, session });
      const endedAt = Date.now();
      expect(stream.status).toBe(200);
      expect(stream.headers['content-type']).toContain('text/event-stream');
      expect(endedAt).toBeGreaterThanOrEqual(exp * 1000);
      expect(endedAt).toBeLessThanOrEqual(exp * 1000 + 500);
      expectOutcome(await inSession(mcpUrl, { token, session, body: WHOAMI }), '401 IT scope=mcp:tools', `${api.url}/.well-known/oauth-protected-resource/mcp`, [token], api.logger.lines);
    });

    it('O11 a tools/call whose POST response streams SSE progress: 0 late events, the stream closed at expiry; the next POST with Ts → 401 invalid_token', async () => {
      const { token, expMs } = shortToken();
      const progress: number[] = [];
      const { client } = await connectClient(url, token);
      client.onerror = () => undefined;
      try {
        const call = client.callTool({ name: 'progress', arguments: {} }, undefined, { onprogress: () => void progress.push(Date.now()), timeout: 30_000 }).catch((error: unknown) => error);
        await sleepUntil(expMs + 1500);
        expect(progress.filter((at) => at <= expMs).length).toBeGreaterThan(0);
        expect(progress.filter((at) => at > expMs + 500)).toEqual([]);
        expect(closedBetween('POST', expMs, expMs + 500)).toHaveLength(1);

        await expect(client.callTool({ name: 'whoami', arguments: {} })).rejects.toMatchObject({ code: 401 });
        await client.close();
        await call;
      } finally {
        await client.close();
      }
      expect(api.logger.lines.some((line) => line.includes(token))).toBe(false);
    });
  });
});

describe.each(ADAPTERS)('MCP streams end when their session is revoked (%s)', (adapter) => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let mcpUrl: string;
  const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };

  beforeAll(async () => {
    zone = await TestZone.start();
    api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), stateful: true, imports: [KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: 3600 })] });
    mcpUrl = `${api.url}/mcp`;
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  /** A mcp-nest session opened with `token`, initialized; its id. */
  async function openSession(token: string): Promise<string> {
    const opened = await send(mcpUrl, 'POST', '/mcp', [['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'], ['Authorization', `Bearer ${token}`]], JSON.stringify(initialize));
    const session = opened.headers['mcp-session-id'] as string;
    expect(session).toEqual(expect.any(String));
    await inSession(mcpUrl, { token, session, body: { jsonrpc: '2.0', method: 'notifications/initialized' } });
    return session;
  }

  it('X28 mcp-nest stateful: the standalone GET SSE stream of a revoked session (RevocationService.revoke) ends, another session\'s stream stays open; the next POST with the token → 401 invalid_token "revoked"', async () => {
    const token = (sub: string, sid: string) => zone.issueToken({ aud: mcpUrl, scope: 'mcp:tools', client_id: 'agent-a', sub, sid });
    const alice = token('alice', 'sid-alice');
    const bob = token('bob', 'sid-bob');
    const [aliceSession, bobSession] = [await openSession(alice), await openSession(bob)];
    // Each resolves when the server ends its stream.
    const aliceStream = inSession(mcpUrl, { method: 'GET', token: alice, session: aliceSession });
    const bobStream = inSession(mcpUrl, { method: 'GET', token: bob, session: bobSession }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300)); // both streams open

    await api.app.get(RevocationService).revoke({ issuer: zone.issuer, sessionId: 'sid-alice' });
    const ended = await aliceStream; // a stream that stayed open would hang here until Jest's timeout
    expect(ended.status).toBe(200);
    expect(ended.headers['content-type']).toContain('text/event-stream');
    expect(await Promise.race([bobStream.then(() => 'ended'), new Promise((resolve) => setTimeout(() => resolve('open'), 500))])).toBe('open');

    const next = await inSession(mcpUrl, { token: alice, session: aliceSession, body: WHOAMI });
    expectOutcome(next, '401 IT scope=mcp:tools', `${api.url}/.well-known/oauth-protected-resource/mcp`, [alice], api.logger.lines);
    expect((next.json as { error_description?: string }).error_description).toBe('The access token has been revoked');
    expect((await inSession(mcpUrl, { token: bob, session: bobSession, body: WHOAMI })).status).toBe(200);
    // Bob's stream is still open: end it the same way, so closing the app does not wait on it.
    await api.app.get(RevocationService).revoke({ issuer: zone.issuer, sessionId: 'sid-bob' });
    await bobStream;
  });
});
