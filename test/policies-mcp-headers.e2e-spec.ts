/**
 * T11: an argument-dependent MCP tool policy at protocol 2026-07-28, where headers try to steer it.
 * The policy reads the call's arguments from the body only, after the header–body check:
 * - `Mcp-Name` naming another tool than the body → 400 HeaderMismatch (-32020), no challenge,
 *   before the token (Q31);
 * - `Mcp-Param-Visibility: public` over a body that says `private`: SEP-2243 compares `Mcp-Param-*`
 *   headers only for parameters a tool declares with `x-mcp-header`, and ignores others. Tools with
 *   an argument-dependent policy are mcp-nest tools, and mcp-nest 2.0.5 refuses `x-mcp-header` at
 *   bootstrap (asserted below), so such a header is never a declared one: it is ignored, and the
 *   body's `private` decides (403 IS(mcp:tools repo:private) with `repo:read`). The row's 400 for a
 *   declared parameter cannot arise on this door today (see the report of the policies issue).
 * Real mcp-nest app, real TestZone, loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { McpController, Tool } from '@rekog/mcp-nest';
import { z } from 'zod';
import { RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { freePort } from './support/free-port.js';
import { send, type HttpAnswer } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { startMcpApp, type RunningMcpApp } from './support/mcp-app.js';

const V2026 = '2026-07-28';
const runs: string[] = [];

@McpController()
class MirroredTools {
  @Tool({ name: 'get_repo', description: 'Declares a mirrored parameter', parameters: z.object({ visibility: z.string().meta({ 'x-mcp-header': 'Visibility' }) }) })
  getRepo() {
    return {};
  }
}

@McpController()
class RepoTools {
  @Tool({
    name: 'get_repo',
    description: 'Reads a repository',
    parameters: z.object({ visibility: z.enum(['public', 'private']) }),
  })
  @RequireScopes.fromArguments((args: { visibility?: string }) => (args.visibility === 'private' ? ['repo:private'] : ['repo:read']))
  getRepo(args: { visibility: string }) {
    runs.push(`get_repo:${args.visibility}`);
    return { repo: args.visibility };
  }
}

/** A 2026-07-28 `tools/call` of get_repo: body envelope and the standard headers, with `visibility` headers as given. */
function callGetRepo(url: string, token: string, body: { visibility: string }, header: { name?: string; visibility?: string }): Promise<HttpAnswer> {
  const meta = { 'io.modelcontextprotocol/protocolVersion': V2026, 'io.modelcontextprotocol/clientCapabilities': {} };
  const headers: [string, string][] = [
    ['Content-Type', 'application/json'],
    ['Accept', 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', V2026],
    ['Mcp-Method', 'tools/call'],
    ['Mcp-Name', header.name ?? 'get_repo'],
    ['Authorization', `Bearer ${token}`],
  ];
  if (header.visibility !== undefined) headers.push(['Mcp-Param-Visibility', header.visibility]);
  const rpc = { jsonrpc: '2.0', id: 11, method: 'tools/call', params: { name: 'get_repo', arguments: body, _meta: meta } };
  return send(url, 'POST', '/mcp', headers, JSON.stringify(rpc));
}

function expectHeaderMismatch(res: HttpAnswer): void {
  expect({ status: res.status, text: res.text.slice(0, 300) }).toMatchObject({ status: 400 });
  expect(res.json).toMatchObject({ jsonrpc: '2.0', id: 11, error: { code: -32020 } });
  expect(res.headers['www-authenticate']).toBeUndefined();
  expect(res.text).not.toContain('insufficient_scope');
}

describe.each(ADAPTERS)('T11 MCP header–body check before the argument-dependent policy, over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let prm: string;
  const token = (scope: string) => zone.issueToken({ aud: `${api.url}/mcp`, scope, client_id: 'agent-11', sub: 'alice' });

  beforeAll(async () => {
    zone = await TestZone.start();
    const port = await freePort();
    api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port, tools: [RepoTools], keycard: { zoneUrl: zone.issuer } });
    prm = `${api.url}/.well-known/oauth-protected-resource/mcp`;
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('T11 consistent headers: public served with repo:read; private → 403 IS(mcp:tools repo:private) judged from the body', async () => {
    runs.length = 0;
    const sent = token('mcp:tools repo:read');
    const served = await callGetRepo(api.url, sent, { visibility: 'public' }, { visibility: 'public' });
    expect(served.status).toBe(200);
    expect(runs).toEqual(['get_repo:public']);
    expectOutcome(await callGetRepo(api.url, sent, { visibility: 'private' }, { visibility: 'private' }), '403:mcp:tools repo:private', prm, [sent], api.logger.lines);
    expect(runs).toEqual(['get_repo:public']);
  });

  it('T11 Mcp-Param-Visibility: public over a private body never steers the policy: repo:read → 403 IS(mcp:tools repo:private) from the body, the tool never runs; repo:private → served as private', async () => {
    runs.length = 0;
    const sent = token('mcp:tools repo:read');
    const refused = await callGetRepo(api.url, sent, { visibility: 'private' }, { visibility: 'public' });
    expectOutcome(refused, '403:mcp:tools repo:private', prm, [sent], api.logger.lines);
    expect(runs).toEqual([]);
    const served = await callGetRepo(api.url, token('mcp:tools repo:private'), { visibility: 'private' }, { visibility: 'public' });
    expect(served.status).toBe(200);
    expect(runs).toEqual(['get_repo:private']);
  });

  it('T11 a tool cannot declare a mirrored parameter (x-mcp-header) under mcp-nest: the bootstrap fails, so no Mcp-Param header is ever a declared one', async () => {
    const port = await freePort();
    await expect(startMcpApp({ adapter, zoneUrl: zone.issuer, port, tools: [MirroredTools], keycard: { zoneUrl: zone.issuer } })).rejects.toThrow(/x-mcp-header/);
  });

  it('T11 Mcp-Name naming another tool (ping, public) over the get_repo body → 400 HeaderMismatch (-32020), no challenge, before the token; the tool never runs', async () => {
    runs.length = 0;
    const sent = token('mcp:tools repo:read repo:private');
    for (const auth of [sent, 'not-a-token']) {
      const res = await callGetRepo(api.url, auth, { visibility: 'private' }, { name: 'ping', visibility: 'public' });
      expectHeaderMismatch(res);
      expect(res.text).not.toContain(sent);
    }
    expect(runs).toEqual([]);
    for (const line of api.logger.lines) expect(line).not.toContain(sent);
  });
});
