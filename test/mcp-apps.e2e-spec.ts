/**
 * Several Nest apps of one process sharing an mcp-nest tool class (tests do; so do apps that create
 * one Nest app per port). Class metadata is the process's: the guard and filter the module binds
 * to a tool class are one for every app, and each call is judged and answered by the app serving
 * it — never by another app's zones or resources, nor by an app that closed — and refused when
 * its app cannot be told. Real apps and zones over loopback, the real MCP SDK client.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { GUARDS_METADATA } from '@nestjs/common/constants.js';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { McpController, Tool } from '@rekog/mcp-nest';
import { Agent, type AgentContext, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { freePort } from './support/free-port.js';
import { send } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { callToolWithToken, startMcpApp, type RunningMcpApp } from './support/mcp-app.js';

/** One tool class, served by every app of this file. */
@McpController()
class SharedAppTools {
  @Tool({ name: 'shared_whoami', description: 'Who is calling, as the serving app saw it' })
  @RequireScopes('orders:read')
  whoami(@Agent() agent: AgentContext) {
    return { issuer: agent.issuer, user: agent.subject };
  }

  @Tool({ name: 'shared_purge', description: 'Admins only' })
  @RequireScopes('admin')
  purge() {
    return { purged: true };
  }
}

/**
 * A JSON-RPC batch (MCP 2025-03-26) calling `shared_purge` on `url`: mcp-nest judges each of its
 * calls in its tool pipeline, where the guard bound to the tool class runs.
 */
function purgeInBatch(url: string, token: string) {
  return send(url, 'POST', '/mcp', [
    ['Content-Type', 'application/json'],
    ['Accept', 'application/json, text/event-stream'],
    ['MCP-Protocol-Version', '2025-03-26'],
    ['Authorization', `Bearer ${token}`],
  ], JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'shared_purge', arguments: {} } }]));
}
const PURGE_REFUSED = { jsonrpc: '2.0', id: 1, result: { isError: true, content: [{ type: 'text', text: 'insufficient_scope: this tool requires scope "admin"' }] } };

describe.each(ADAPTERS)('two apps of one process sharing an mcp-nest tool class, over %s', (adapter) => {
  let zoneA: TestZone;
  let zoneB: TestZone;
  const apps: RunningMcpApp[] = [];
  /** An app trusting `zone` alone, serving {@link SharedAppTools} at its own resource. */
  const start = async (zone: TestZone) => {
    const port = await freePort();
    const app = await startMcpApp({ adapter, zoneUrl: zone.issuer, port, tools: [SharedAppTools] });
    apps.push(app);
    return { app, resource: `http://127.0.0.1:${port}/mcp` };
  };
  const text = (result: Awaited<ReturnType<typeof callToolWithToken>>) => (result.content as { text?: string }[] | undefined)?.[0]?.text;

  beforeAll(async () => {
    [zoneA, zoneB] = await Promise.all([TestZone.start(), TestZone.start()]);
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });
  afterAll(async () => {
    await Promise.all([zoneA?.stop(), zoneB?.stop()]);
  });

  it('each app\'s tool calls are judged by its own guard: app A (another zone, another resource) judges and logs none of app B\'s, and B\'s run with B\'s agent', async () => {
    const a = await start(zoneA);
    const b = await start(zoneB);
    const fromB = await callToolWithToken(`${b.app.url}/mcp`, zoneB.issueToken({ aud: b.resource, sub: 'bob', scope: 'mcp:tools orders:read' }), 'shared_whoami');
    expect(fromB.isError).toBeFalsy();
    expect(JSON.parse(text(fromB) ?? '{}')).toEqual({ issuer: zoneB.issuer, user: 'bob' });
    const fromA = await callToolWithToken(`${a.app.url}/mcp`, zoneA.issueToken({ aud: a.resource, sub: 'alice', scope: 'mcp:tools orders:read' }), 'shared_whoami');
    expect(JSON.parse(text(fromA) ?? '{}')).toEqual({ issuer: zoneA.issuer, user: 'alice' });
    // A call B's guard refuses in the tool pipeline: refused once, in B's log; A's guard saw nothing.
    const refused = await purgeInBatch(b.app.url, zoneB.issueToken({ aud: b.resource, sub: 'bob', scope: 'mcp:tools' }));
    expect({ status: refused.status, body: refused.json }).toEqual({ status: 200, body: PURGE_REFUSED });
    expect(b.app.logger.levels.warn.filter((line) => line.includes('SharedAppTools.purge'))).toHaveLength(1);
    expect([...a.app.logger.levels.warn, ...a.app.logger.levels.error]).toEqual([]);
  });

  it('after app A closes, app B still serves the class, judged by its guard alone', async () => {
    const a = await start(zoneA);
    const b = await start(zoneB);
    await a.app.close();
    apps.splice(apps.indexOf(a.app), 1);
    const before = a.app.logger.lines.length;
    const result = await callToolWithToken(`${b.app.url}/mcp`, zoneB.issueToken({ aud: b.resource, sub: 'bob', scope: 'mcp:tools orders:read' }), 'shared_whoami');
    expect(JSON.parse(text(result) ?? '{}')).toEqual({ issuer: zoneB.issuer, user: 'bob' });
    const refused = await purgeInBatch(b.app.url, zoneB.issueToken({ aud: b.resource, scope: 'mcp:tools' }));
    expect(refused.json).toEqual(PURGE_REFUSED);
    expect(b.app.logger.levels.warn.filter((line) => line.includes('SharedAppTools.purge'))).toHaveLength(1);
    expect(b.app.logger.levels.error).toEqual([]);
    expect(a.app.logger.lines.slice(before)).toEqual([]);
  });

  it('a tool call whose request no app\'s guard claimed (a self-mounted transport, stdio) while two apps serve the class → refused server_error, one error line per app saying how to wire it', async () => {
    const a = await start(zoneA);
    const b = await start(zoneB);
    const guards = Reflect.getMetadata(GUARDS_METADATA, SharedAppTools) as { canActivate(context: ExecutionContextHost): unknown }[];
    expect(guards).toHaveLength(1);
    // An mcp-nest tool call as its pipeline hands it to the guards: an rpc context whose `McpContext` has the request.
    const context = new ExecutionContextHost([{}, { getRawRequest: () => ({ headers: {} }) }], SharedAppTools, SharedAppTools.prototype.whoami);
    context.setType('rpc');
    for (let i = 0; i < 2; i++) {
      await expect(Promise.resolve().then(() => guards[0].canActivate(context))).rejects.toMatchObject({ message: expect.stringMatching(/^server_error: /) as unknown });
    }
    for (const app of [a.app, b.app]) {
      expect(app.logger.levels.error).toHaveLength(1);
      expect(app.logger.levels.error[0]).toContain('Keycard refused MCP tool SharedAppTools.whoami: several apps in this process serve its class');
      expect(app.logger.levels.error[0]).toContain('McpHttpControllerFor(transport)');
    }
  });
});
