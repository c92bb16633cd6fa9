/**
 * The checks of the MCP conformance suite's server-side authorization scenarios that are still in
 * open pull requests of `modelcontextprotocol/conformance` (catalogue U18): `auth-token-audience-validation`
 * (PR #386) and `server/auth-*` (PR #64), each a test named by scenario and check id, against both
 * MCP shapes (mcp-nest 2.x and the MCP SDK transport in an `@McpEndpoint()` controller) configured
 * only through the module's public options, with the authorization server started AFTER the API
 * (the case that once cost a 30 s back-off: U16). `npm run conformance:mcp` runs this file too.
 * DPoP (`auth/dpop-server-validation`, PR #395, U19) is another issue's and is not run here.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { RETRY_ON_DEMAND_FLOOR_MS } from '../lib/keycard.constants.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { freePort } from './support/free-port.js';
import { send, type HttpAnswer } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { startMcpApp, type RunningMcpApp } from './support/mcp-app.js';

/** An `initialize` as a 2025-11-25 client opens with (the first request of every MCP client). */
const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'auth-conformance', version: '1.0.0' } },
});

const SHAPES = [
  ['mcp-nest', '/mcp', 'mcp:tools'],
  ['the MCP SDK transport in an @McpEndpoint() controller', '/sdk-mcp', undefined],
] as const;

describe.each(ADAPTERS)('MCP authorization conformance over %s', (adapter) => {
  let zone: TestZone;
  let stranger: TestZone;
  let api: RunningMcpApp;

  beforeAll(async () => {
    const zonePort = await freePort();
    // The API first, trusting a zone that is not up yet; the zone after it.
    api = await startMcpApp({ adapter, zoneUrl: `http://127.0.0.1:${zonePort}`, port: await freePort() });
    zone = await TestZone.start({ port: zonePort });
    stranger = await TestZone.start();
    // A request within the on-demand retry floor of the boot's failed discovery is answered 503 +
    // Retry-After by design (U16: at most one zone attempt per 500 ms); a conformance client's first
    // authorised request comes after it.
    await new Promise((resolve) => setTimeout(resolve, RETRY_ON_DEMAND_FLOOR_MS));
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
    await stranger?.stop();
  });

  describe.each(SHAPES)('%s', (_shape, path, scope) => {
    const resource = () => `${api.url}${path}`;
    const prm = () => `${api.url}/.well-known/oauth-protected-resource${path}`;
    const challenge401 = scope === undefined ? '401∅' : (`401∅ scope=${scope}` as const);
    const invalid401 = scope === undefined ? '401 IT' : (`401 IT scope=${scope}` as const);
    const now = () => Math.floor(Date.now() / 1000);
    const claims = () => ({ aud: resource(), scope: scope ?? 'read', sub: 'alice', client_id: 'agent-7' });
    const initialize = (token?: string): Promise<HttpAnswer> => {
      const headers: [string, string][] = [['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream']];
      if (token !== undefined) headers.push(['Authorization', `Bearer ${token}`]);
      return send(api.url, 'POST', path, headers, INITIALIZE);
    };

    it('U18 auth-token-audience-validation/auth-unauthenticated-request-rejected: no token → 401 with a Bearer challenge naming the resource metadata', async () => {
      expectOutcome(await initialize(), challenge401, prm());
    });

    it('U18 auth-token-audience-validation/auth-valid-audience-token-accepted: aud = this server → served (the zone started after the API)', async () => {
      const res = await initialize(zone.issueToken(claims()));
      expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: 200 });
    });

    it('U18 auth-token-audience-validation/auth-wrong-audience-token-rejected: aud = another server → 401 invalid_token', async () => {
      const sent = zone.issueToken({ ...claims(), aud: 'https://other-mcp.example.com/mcp' });
      expectOutcome(await initialize(sent), invalid401, prm(), [sent], api.logger.lines);
    });

    it('U18 auth-token-audience-validation/auth-missing-audience-token-rejected: no aud → 401 invalid_token', async () => {
      const sent = zone.issueToken({ ...claims(), aud: undefined });
      expectOutcome(await initialize(sent), invalid401, prm(), [sent], api.logger.lines);
    });

    it('U18 auth-token-audience-validation/auth-expired-token-rejected: exp past the leeway → 401 invalid_token', async () => {
      const sent = zone.issueToken({ ...claims(), iat: now() - 900, exp: now() - 600 });
      expectOutcome(await initialize(sent), invalid401, prm(), [sent], api.logger.lines);
    });

    it('U18 auth-token-audience-validation/auth-untrusted-token-rejected: signed by an authorization server this API does not trust → 401 invalid_token', async () => {
      const sent = stranger.issueToken(claims());
      expectOutcome(await initialize(sent), invalid401, prm(), [sent], api.logger.lines);
    });

    it('U18 server/auth-401-unauthorized and server/auth-www-authenticate-header: 401 with exactly one Bearer challenge carrying resource_metadata', async () => {
      const res = await initialize();
      expect(res.status).toBe(401);
      const header = res.headers['www-authenticate'];
      expect(typeof header).toBe('string');
      expect(String(header)).toMatch(/^Bearer /);
      expect(String(header)).toContain(`resource_metadata="${prm()}"`);
    });

    it('U18 server/auth-prm-discovery and server/auth-prm-resource-validation: the challenge\'s metadata URL serves JSON whose resource is the URL the client called, with the zone as authorization server', async () => {
      const res = await send(prm(), 'GET', new URL(prm()).pathname);
      expect(res.status).toBe(200);
      expect(String(res.headers['content-type'])).toContain('application/json');
      expect(res.json).toMatchObject({ resource: resource(), authorization_servers: [zone.issuer] });
    });

    it('U18 server/auth-discovery-mechanism: from the 401 alone a client reaches the zone\'s RFC 8414 metadata (resource_metadata → authorization_servers[0] → well-known)', async () => {
      const header = String((await initialize()).headers['www-authenticate']);
      const metadataUrl = /resource_metadata="([^"]+)"/.exec(header)![1];
      const { authorization_servers: [issuer] } = (await (await fetch(metadataUrl)).json()) as { authorization_servers: string[] };
      const as = (await (await fetch(new URL('/.well-known/oauth-authorization-server', issuer))).json()) as { issuer?: string; token_endpoint?: string };
      expect(as.issuer).toBe(zone.issuer);
      expect(typeof as.token_endpoint).toBe('string');
    });
  });
});
