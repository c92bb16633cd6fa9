/**
 * T25, the MCP client half: the MCP TypeScript SDK client (1.x, `StreamableHTTPClientTransport` with
 * an OAuth provider) against an mcp-nest tool that requires a stronger sign-in (RFC 9470).
 *
 * What the SDK does (read in node_modules/@modelcontextprotocol/sdk/dist/esm/client): on a 401 its
 * transport reads only `resource_metadata` and `scope` from the challenge
 * (`extractWWWAuthenticateParams`, which also reads `error` but the 401 branch ignores it), then runs
 * `auth()`, whose authorization URL carries `response_type`, `client_id`, PKCE, `redirect_uri`,
 * `state`, `scope` and `resource`, never `acr_values` or `max_age`. So the SDK alone signs the user
 * in again exactly as before, and the zone issues the same weak `acr`. It does not loop: one
 * authorization per refused call (it throws `UnauthorizedError` for the app to finish the sign-in).
 *
 * The provider sees the authorization URL before the browser does, so an application can add the
 * challenge's `acr_values` / `max_age` itself: `TestZoneMcpLogin.fetch` (passed as the transport's
 * `fetch`) notes the step-up challenge and the provider adds them. With it: 401 SU → one
 * re-authorization carrying `acr_values` → a token with `acr: urn:kc:mfa` and a fresh `auth_time`
 * → the tool runs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpController, Tool } from '@rekog/mcp-nest';
import { Agent, RequireAuthentication } from '../lib/index.js';
import { TestZone, TestZoneMcpLogin } from '../lib/testing/index.js';
import { freePort } from './support/free-port.js';
import { parseChallenge } from './support/http.js';
import { resourcesOf, startMcpApp, toolJson, type RunningMcpApp } from './support/mcp-app.js';

const ACR = 'urn:kc:mfa urn:kc:phr';
const STEP_UP = 'A stronger or more recent user authentication is required';
const REDIRECT = 'http://127.0.0.1:9/callback'; // never contacted: the provider reads the code off the redirect
const runs: string[] = [];

@McpController()
class PaymentTools {
  @Tool({ name: 'wire_money', description: 'High-impact: needs a strong sign-in' })
  @RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'] })
  wire(@Agent('claims') claims: Record<string, unknown>) {
    runs.push(String(claims.acr));
    return { wired: true, acr: claims.acr };
  }
}

function claimsOf(token: string): { acr?: string; auth_time?: number } {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as { acr?: string; auth_time?: number };
}

describe('T25 RFC 9470 step-up with the MCP SDK client', () => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let mcpUrl: string;
  let prm: string;

  beforeAll(async () => {
    const port = await freePort();
    mcpUrl = `http://127.0.0.1:${port}/mcp`;
    prm = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
    zone = await TestZone.start({
      resources: Object.fromEntries(resourcesOf(port).map((r) => [r, ['mcp:tools']])),
      clients: [{ clientId: 'mcp-agent', public: true, redirectUris: [REDIRECT] }],
      devUser: { sub: 'dev-user', acr: 'urn:kc:pwd' },
    });
    api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, tools: [PaymentTools] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  /** Signs in once with a password-strength sign-in, then connects a client over `fetchFn` (which records every 401's challenge). */
  async function signedIn(provider: TestZoneMcpLogin, fetchFn: typeof fetch) {
    const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: fetchFn });
    await expect(new Client({ name: 'agent', version: '1.0.0' }).connect(first)).rejects.toBeInstanceOf(UnauthorizedError);
    await first.finishAuth(provider.code!);
    expect(claimsOf(provider.accessToken!).acr).toBe('urn:kc:pwd');
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: fetchFn });
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(transport);
    return { client, transport };
  }

  /** A fetch that records the `WWW-Authenticate` of every 401 the client receives. */
  function recording(inner: typeof fetch = fetch) {
    const challenges: string[] = [];
    const fetchFn = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      const res = await inner(input, init);
      if (res.status === 401) challenges.push(res.headers.get('www-authenticate') ?? '');
      return res;
    }) as typeof fetch;
    return { challenges, fetchFn };
  }

  it('T25 the SDK alone: the 401 it gets is a well-formed RFC 9470 challenge; it re-authorizes exactly once per refused call, without acr_values, and does not loop', async () => {
    runs.length = 0;
    const provider = new TestZoneMcpLogin('mcp-agent', REDIRECT);
    const { challenges, fetchFn } = recording();
    const { client, transport } = await signedIn(provider, fetchFn);
    try {
      const before = provider.authorizations.length;
      await expect(client.callTool({ name: 'wire_money', arguments: {} })).rejects.toBeInstanceOf(UnauthorizedError);
      expect(parseChallenge(challenges.at(-1))?.params).toEqual({
        error: 'insufficient_user_authentication', error_description: STEP_UP, acr_values: ACR, scope: 'mcp:tools', resource_metadata: prm,
      });
      expect(provider.authorizations.length - before).toBe(1);
      const again = provider.authorizations.at(-1)!;
      expect(again.searchParams.get('scope')).toBe('mcp:tools');
      expect(again.searchParams.has('acr_values')).toBe(false);
      expect(again.searchParams.has('max_age')).toBe(false);
      // Finishing that sign-in gives the same weak acr: the call is refused again, once more, and ends.
      await transport.finishAuth(provider.code!);
      expect(claimsOf(provider.accessToken!).acr).toBe('urn:kc:pwd');
      await expect(client.callTool({ name: 'wire_money', arguments: {} })).rejects.toBeInstanceOf(UnauthorizedError);
      expect(provider.authorizations.length - before).toBe(2);
      expect(runs).toEqual([]);
    } finally {
      await client.close();
    }
  });

  it('T25 with the provider adding the challenge\'s acr_values (TestZoneMcpLogin.fetch): 401 SU → one /authorize with acr_values → a token with acr urn:kc:mfa and a fresh auth_time → the tool runs', async () => {
    runs.length = 0;
    const provider = new TestZoneMcpLogin('mcp-agent', REDIRECT);
    const { challenges, fetchFn } = recording(provider.fetch);
    const { client, transport } = await signedIn(provider, fetchFn);
    try {
      expect(provider.authorizations[0].searchParams.has('acr_values')).toBe(false); // a first sign-in asks for no strength
      const before = zone.counts.authorize;
      await expect(client.callTool({ name: 'wire_money', arguments: {} })).rejects.toBeInstanceOf(UnauthorizedError);
      expect(parseChallenge(challenges.at(-1))?.params.error).toBe('insufficient_user_authentication');
      expect(zone.counts.authorize - before).toBe(1);
      const asked = zone.authorizeRequests.at(-1)!;
      expect({ acr_values: asked.get('acr_values'), scope: asked.get('scope'), resource: asked.get('resource') }).toEqual({ acr_values: ACR, scope: 'mcp:tools', resource: mcpUrl });
      await transport.finishAuth(provider.code!);
      const claims = claimsOf(provider.accessToken!);
      expect(claims.acr).toBe('urn:kc:mfa');
      expect(Math.abs(Date.now() / 1000 - claims.auth_time!)).toBeLessThan(60);
      expect(toolJson(await client.callTool({ name: 'wire_money', arguments: {} }))).toEqual({ wired: true, acr: 'urn:kc:mfa' });
      expect(zone.counts.authorize - before).toBe(1);
      expect(runs).toEqual(['urn:kc:mfa']);
    } finally {
      await client.close();
    }
    for (const line of api.logger.lines) expect(line.includes(provider.accessToken!.split('.')[2]!)).toBe(false);
  });
});
