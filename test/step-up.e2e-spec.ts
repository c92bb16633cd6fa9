/**
 * T25: an RFC 9470 step-up end to end with the module's own PKCE helper and TestZone: a token from a
 * password sign-in is refused with 401 insufficient_user_authentication, the helper signs the user
 * in again carrying the challenge's acr_values, the zone issues a token with the stronger acr and a
 * fresh auth_time, and the retry is served. Exactly one re-authorization.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Post, HttpCode } from '@nestjs/common';
import { Agent, RequireAuthentication, RequireScopes, type AgentContext } from '../lib/index.js';
import { authenticate } from '../lib/pkce/index.js';
import { TestZone } from '../lib/testing/index.js';
import { freePort } from './support/free-port.js';
import { followAuthorization, parseChallenge, send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

@Controller()
class PaymentsController {
  @Post('transfers')
  @HttpCode(200)
  @RequireScopes('payments:write')
  @RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'], maxAge: 300 })
  transfer(@Agent() agent: AgentContext) {
    return { transferred: true, acr: agent.claims.acr };
  }
}

describe('T25 RFC 9470 step-up with the PKCE helper and TestZone', () => {
  let zone: TestZone;
  let api: RunningApp;
  let redirectUri: string;

  beforeAll(async () => {
    redirectUri = `http://127.0.0.1:${await freePort()}/callback`;
    zone = await TestZone.start({ resources: {}, clients: [{ clientId: 'cli', public: true, redirectUris: [redirectUri] }], devUser: { sub: 'dev-alice', acr: 'urn:kc:pwd' } });
    api = await startApp('express', { zoneUrl: zone.issuer }, { controllers: [PaymentsController] });
    zone.registerResource(api.url, ['payments:write']);
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const transfer = (token: string) => send(api.url, 'POST', '/transfers', [['Authorization', `Bearer ${token}`]]);

  it('T25 a password sign-in → 401 SU → /authorize with acr_values → a token with acr urn:kc:mfa and a fresh auth_time → 200; one re-authorization', async () => {
    const anonymous = await send(api.url, 'POST', '/transfers');
    expect(parseChallenge(anonymous.headers['www-authenticate'])?.params).toEqual({ scope: 'payments:write', resource_metadata: `${api.url}/.well-known/oauth-protected-resource` });
    const first = await authenticate({ clientId: 'cli', resourceUrl: `${api.url}/transfers`, wwwAuthenticate: anonymous.headers['www-authenticate'] as string, redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000 });
    const refused = await transfer(first.accessToken);
    expect(refused.status).toBe(401);
    const header = refused.headers['www-authenticate'] as string;
    expect(parseChallenge(header)?.params).toEqual({
      error: 'insufficient_user_authentication',
      error_description: 'A stronger or more recent user authentication is required',
      acr_values: 'urn:kc:mfa urn:kc:phr',
      scope: 'payments:write',
      resource_metadata: `${api.url}/.well-known/oauth-protected-resource`,
    });

    const before = zone.counts.authorize;
    const stepped = await authenticate({ clientId: 'cli', resourceUrl: `${api.url}/transfers`, wwwAuthenticate: header, redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000 });
    expect(zone.counts.authorize - before).toBe(1);
    const asked = zone.authorizeRequests.at(-1)!;
    expect({ acr_values: asked.get('acr_values'), scope: asked.get('scope') }).toEqual({ acr_values: 'urn:kc:mfa urn:kc:phr', scope: 'payments:write' });
    const claims = JSON.parse(Buffer.from(stepped.accessToken.split('.')[1], 'base64url').toString('utf8')) as { acr?: string; auth_time?: number };
    expect(claims.acr).toBe('urn:kc:mfa');
    expect(Math.abs(Date.now() / 1000 - claims.auth_time!)).toBeLessThan(60);

    const served = await transfer(stepped.accessToken);
    expect({ status: served.status, json: served.json }).toEqual({ status: 200, json: { transferred: true, acr: 'urn:kc:mfa' } });
    for (const line of api.logger.lines) {
      for (const token of [first.accessToken, stepped.accessToken]) expect(line.includes(token.split('.')[2]!)).toBe(false);
    }
  });
});
