/** The PKCE login helper against the local zone's real authorization and token endpoints. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { authenticate, PkceLoginError } from '../lib/pkce/index.js';
import { TestZone } from '../lib/testing/index.js';
import { freePort } from './support/free-port.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

describe('PKCE login helper', () => {
  let zone: TestZone;
  let api: RunningApp;
  let redirectUri: string;
  let resource: string;

  beforeAll(async () => {
    redirectUri = `http://127.0.0.1:${await freePort()}/callback`;
    zone = await TestZone.start({
      resources: {},
      clients: [
        { clientId: 'cli', public: true, redirectUris: [redirectUri] },
        { clientId: 'confidential', clientSecret: 'conf-secret-1', redirectUris: [redirectUri] },
      ],
      devUser: { sub: 'dev-alice' },
    });
    // No resource configured: the API derives it from its loopback origin.
    api = await startApp('express', { zoneUrl: zone.issuer });
    resource = api.url;
    zone.registerResource(resource, ['orders:read', 'orders:write', 'admin', 'reports:read']);
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  /** A browser stand-in: follows the authorization redirect to the loopback callback. */
  const browser = async (url: string) => {
    const authorize = await fetch(url, { redirect: 'manual' });
    const location = authorize.headers.get('location');
    if (location) await fetch(location);
  };

  async function challenge() {
    return (await send(api.url, 'GET', '/orders')).headers['www-authenticate'] as string;
  }

  it('signs in with PKCE S256 and returns a token the API accepts', async () => {
    const tokens = await authenticate({
      clientId: 'cli', resourceUrl: `${api.url}/orders`, wwwAuthenticate: await challenge(),
      scopes: ['orders:read'], redirectUri, openBrowser: browser, timeoutMs: 5_000,
    });
    expect(tokens).toMatchObject({ tokenType: 'Bearer', scope: 'orders:read', resource, issuer: zone.issuer });
    const res = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${tokens.accessToken}`]]);
    expect(res.status).toBe(200);
    expect((res.json as { agent: Record<string, unknown> }).agent).toMatchObject({ subject: 'dev-alice', clientId: 'cli' });
    const [authorizeCall] = zone.tokenRequests.slice(-1);
    expect(authorizeCall.form).toMatchObject({ grant_type: 'authorization_code', resource, client_id: 'cli' });
    expect(authorizeCall.form.code_verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('reads the challenge itself when none is given, and authenticates a confidential client with Basic', async () => {
    const tokens = await authenticate({
      clientId: 'confidential', clientSecret: 'conf-secret-1', resourceUrl: `${api.url}/orders`,
      redirectUri, openBrowser: browser, timeoutMs: 5_000,
    });
    expect(tokens.accessToken).toBeTruthy();
    expect(zone.tokenRequests.at(-1)?.headers.authorization).toMatch(/^Basic /);
  });

  it('sends resource and S256 challenge on the authorization leg', async () => {
    let seen: URL | undefined;
    await authenticate({
      clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, timeoutMs: 5_000,
      openBrowser: async (url) => {
        seen = new URL(url);
        await browser(url);
      },
    });
    expect(seen?.searchParams.get('resource')).toBe(resource);
    expect(seen?.searchParams.get('code_challenge_method')).toBe('S256');
    expect(seen?.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('refuses an answer with the wrong state', async () => {
    const login = authenticate({
      clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, timeoutMs: 5_000,
      openBrowser: async () => {
        await fetch(`${redirectUri}?code=stolen&state=forged`);
      },
    });
    await expect(login).rejects.toMatchObject({ code: 'state_mismatch' });
    await expect(login).rejects.toBeInstanceOf(PkceLoginError);
  });

  it('times out when the user never comes back, and frees the port', async () => {
    const login = authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, timeoutMs: 300, openBrowser: () => undefined });
    await expect(login).rejects.toMatchObject({ code: 'timeout' });
    // The port is free again: another login can listen on it.
    await authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, openBrowser: browser, timeoutMs: 5_000 });
  });

  it('passes on an error from the zone', async () => {
    zone.authorizeError = 'access_denied';
    try {
      const login = authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, openBrowser: browser, timeoutMs: 5_000 });
      await expect(login).rejects.toMatchObject({ code: 'access_denied' });
    } finally {
      zone.authorizeError = undefined;
    }
  });

  it('refuses a challenge without resource_metadata', async () => {
    await expect(authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: 'Bearer realm="x"', redirectUri })).rejects.toMatchObject({ code: 'invalid_challenge' });
  });
});
