/** The PKCE login helper against the local zone's real authorization and token endpoints. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { authenticate, PkceLoginError, type AuthenticateOptions } from '../lib/pkce/index.js';
import { TestZone } from '../lib/testing/index.js';
import { startCountingListener } from './support/counting-listener.js';
import { freePort } from './support/free-port.js';
import { followAuthorization, parseChallenge, send } from './support/http.js';
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


  async function challenge() {
    return (await send(api.url, 'GET', '/orders')).headers['www-authenticate'] as string;
  }

  it('signs in with PKCE S256 and returns a token the API accepts', async () => {
    const tokens = await authenticate({
      clientId: 'cli', resourceUrl: `${api.url}/orders`, wwwAuthenticate: await challenge(),
      scopes: ['orders:read'], redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000,
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
      redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000,
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
        await followAuthorization(url);
      },
    });
    expect(seen?.searchParams.get('resource')).toBe(resource);
    expect(seen?.searchParams.get('code_challenge_method')).toBe('S256');
    expect(seen?.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('times out when the user never comes back, and frees the port', async () => {
    const login = authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, timeoutMs: 300, openBrowser: () => undefined });
    await expect(login).rejects.toMatchObject({ code: 'timeout' });
    // The port is free again: another login can listen on it.
    await authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000 });
  });

  it('passes on an error from the zone', async () => {
    zone.authorizeError = 'access_denied';
    try {
      const login = authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000 });
      await expect(login).rejects.toMatchObject({ code: 'access_denied' });
    } finally {
      zone.authorizeError = undefined;
    }
  });

  it('refuses a challenge without resource_metadata', async () => {
    await expect(authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: 'Bearer realm="x"', redirectUri })).rejects.toMatchObject({ code: 'invalid_challenge' });
  });

  /** The resource metadata URL the API's own challenge names. */
  async function prmUrl() {
    return parseChallenge(await challenge())!.params.resource_metadata;
  }

  /** `fetch` that records every request it sends (URL and whether it carried credentials), then sends it. */
  function recordingFetch() {
    const sent: { url: string; authorization?: string }[] = [];
    const fetchFn: AuthenticateOptions['fetch'] = (input, init) => {
      const headers = new Headers(init?.headers);
      sent.push({ url: String(input), authorization: headers.get('authorization') ?? undefined });
      return globalThis.fetch(input, init);
    };
    return { sent, fetch: fetchFn };
  }

  describe('P1 challenge grammar (RFC 9110 §11)', () => {
    const variants: [string, (prm: string, decoy: string) => string][] = [
      ['a parameter name in another case', (prm) => `Bearer Resource_Metadata="${prm}"`],
      ['whitespace around =', (prm) => `Bearer resource_metadata = "${prm}"`],
      ['a DPoP challenge before the Bearer one', (prm) => `DPoP algs="ES256", Bearer resource_metadata="${prm}"`],
      ['a quoted value with a \\" escape', (prm) => `Bearer realm="the \\"orders\\" API", resource_metadata="${prm}"`],
      ['another scheme naming another document', (prm, decoy) => `DPoP resource_metadata="${decoy}", bearer error="invalid_token", RESOURCE_METADATA="${prm}"`],
    ];
    it.each(variants)('P1 the Bearer resource_metadata is found with %s, and the login completes', async (_what, header) => {
      const decoy = await startCountingListener();
      try {
        const tokens = await authenticate({
          clientId: 'cli', resourceUrl: `${api.url}/orders`, wwwAuthenticate: header(await prmUrl(), `${decoy.url}/prm`),
          scopes: ['orders:read'], redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000,
        });
        expect(tokens).toMatchObject({ resource, issuer: zone.issuer, scope: 'orders:read' });
        expect(decoy.hits()).toBe(0);
      } finally {
        await decoy.close();
      }
    });

    it('P1 a challenge that breaks the grammar, or repeats resource_metadata, is refused before any request', async () => {
      const prm = await prmUrl();
      for (const header of [`Bearer resource_metadata="${prm}`, `Bearer resource_metadata="${prm}", Resource_Metadata="${prm}"`, `Basic resource_metadata="${prm}"`]) {
        const recorder = recordingFetch();
        const login = authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: header, redirectUri, fetch: recorder.fetch, openBrowser: followAuthorization });
        await expect(login).rejects.toMatchObject({ name: 'PkceLoginError', code: 'invalid_challenge' });
        expect(recorder.sent).toEqual([]);
      }
    });
  });

  it('P2 stray requests to the callback (wrong state, no query, other path, no state, POST, unparseable target) get 4xx and change nothing; the real redirect then completes', async () => {
    const strays: number[] = [];
    const tokenRequestsBefore = zone.tokenRequests.length;
    const tokens = await authenticate({
      clientId: 'cli', resourceUrl: `${api.url}/orders`, wwwAuthenticate: await challenge(), scopes: ['orders:read'],
      redirectUri, timeoutMs: 5_000,
      openBrowser: async (url) => {
        const state = new URL(url).searchParams.get('state')!;
        const origin = new URL(redirectUri).origin;
        for (const [target, method] of [
          [`${redirectUri}?code=stolen&state=forged`, 'GET'],
          [redirectUri, 'GET'],
          [`${origin}/favicon.ico`, 'GET'],
          [`${redirectUri}?code=stolen`, 'GET'],
          [`${redirectUri}?code=stolen&state=${state}&state=forged`, 'GET'],
          [`${redirectUri}?code=stolen&state=${state}`, 'POST'],
        ]) {
          strays.push((await fetch(target, { method })).status);
        }
        // Request targets the URL parser refuses, sent as written (fetch would normalise them).
        for (const target of ['//x:99999/callback', '/\\x:0/callback']) strays.push(await rawStatus(redirectUri, target));
        await followAuthorization(url);
      },
    });
    expect(strays).toEqual([400, 400, 404, 400, 400, 405, 400, 400]);
    // Only the real code was redeemed, and the token it gave is accepted.
    expect(zone.tokenRequests.length - tokenRequestsBefore).toBe(1);
    expect(zone.tokenRequests.at(-1)!.form.code).not.toBe('stolen');
    const res = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${tokens.accessToken}`]]);
    expect(res.status).toBe(200);
  });

  describe('P3 scopes when none are given', () => {
    /** The scope the authorization request asked for, and the tokens of the login. */
    async function loginWith(wwwAuthenticate: string) {
      let asked: string | null = null;
      const tokens = await authenticate({
        clientId: 'cli', resourceUrl: `${api.url}/orders`, wwwAuthenticate, redirectUri, timeoutMs: 5_000,
        openBrowser: async (url) => {
          asked = new URL(url).searchParams.get('scope');
          await followAuthorization(url);
        },
      });
      return { asked: asked as string | null, tokens };
    }

    it('P3 challenge with scope="orders:read reports:read" → asks for exactly those', async () => {
      const { asked, tokens } = await loginWith(`Bearer resource_metadata="${await prmUrl()}", scope="orders:read reports:read"`);
      expect(asked).toBe('orders:read reports:read');
      expect(tokens.scope).toBe('orders:read reports:read');
    });

    it('P3 challenge without scope → the resource\'s scopes_supported, nothing more', async () => {
      const prm = await prmUrl();
      const supported = ((await (await fetch(prm)).json()) as { scopes_supported: string[] }).scopes_supported;
      expect(supported.length).toBeGreaterThan(0);
      const { asked } = await loginWith(`Bearer resource_metadata="${prm}"`);
      expect(asked).toBe(supported.join(' '));
    });
  });

  describe('P4 the client secret goes only to the expected zone, over https or loopback, on its own origin', () => {
    /** A loopback API whose resource metadata names `authorizationServers`. */
    async function startForeignResource(authorizationServers: string[]) {
      const server: Server = createServer((req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ resource: `http://${req.headers.host}`, authorization_servers: authorizationServers }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      return { url, prm: `${url}/.well-known/oauth-protected-resource`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
    }
    /** A confidential login that must fail with `code` before the secret is sent anywhere. */
    async function expectRefused(options: Partial<AuthenticateOptions> & Pick<AuthenticateOptions, 'resourceUrl' | 'wwwAuthenticate'>, code: string) {
      const recorder = recordingFetch();
      let opened = false;
      const before = { authorize: zone.counts.authorize, token: zone.counts.token };
      const login = authenticate({
        clientId: 'confidential', clientSecret: 'conf-secret-1', redirectUri, timeoutMs: 5_000, fetch: recorder.fetch,
        openBrowser: async (url) => {
          opened = true;
          await followAuthorization(url);
        },
        ...options,
      });
      await expect(login).rejects.toBeInstanceOf(PkceLoginError);
      await expect(login).rejects.toMatchObject({ code });
      await login.catch((error: Error) => expect(error.message).not.toContain('conf-secret-1'));
      expect(opened).toBe(false);
      expect(recorder.sent.every((request) => request.authorization === undefined)).toBe(true);
      expect({ authorize: zone.counts.authorize, token: zone.counts.token }).toEqual(before);
      return recorder.sent;
    }

    it('P4 expectedIssuer given, the resource metadata names another zone → unexpected_issuer', async () => {
      const sent = await expectRefused(
        { resourceUrl: `${api.url}/orders`, wwwAuthenticate: await challenge(), expectedIssuer: 'https://as.example.com' },
        'unexpected_issuer',
      );
      expect(sent.map((request) => request.url)).toEqual([await prmUrl()]);
    });

    it('P4 the resource metadata names a plain-http zone off loopback → insecure_issuer, nothing sent to it', async () => {
      const foreign = await startForeignResource(['http://as.example.com']);
      try {
        const sent = await expectRefused({ resourceUrl: foreign.url, wwwAuthenticate: `Bearer resource_metadata="${foreign.prm}"` }, 'insecure_issuer');
        expect(sent.map((request) => request.url)).toEqual([foreign.prm]);
      } finally {
        await foreign.close();
      }
    });

    it('P4 the zone names a token endpoint on another origin → token_endpoint_origin, that origin never contacted', async () => {
      const elsewhere = await startCountingListener();
      zone.metadataOverrides = { token_endpoint: `${elsewhere.url}/token` };
      try {
        await expectRefused({ resourceUrl: `${api.url}/orders`, wwwAuthenticate: await challenge() }, 'token_endpoint_origin');
        expect(elsewhere.hits()).toBe(0);
      } finally {
        zone.metadataOverrides = {};
        await elsewhere.close();
      }
    });

    it('P4 expectedIssuer is the zone the resource names → the login completes, the secret sent once, to the zone', async () => {
      const recorder = recordingFetch();
      const tokens = await authenticate({
        clientId: 'confidential', clientSecret: 'conf-secret-1', expectedIssuer: zone.issuer, resourceUrl: `${api.url}/orders`,
        wwwAuthenticate: await challenge(), scopes: ['orders:read'], redirectUri, openBrowser: followAuthorization, timeoutMs: 5_000, fetch: recorder.fetch,
      });
      expect(tokens.issuer).toBe(zone.issuer);
      const withSecret = recorder.sent.filter((request) => request.authorization !== undefined);
      expect(withSecret).toEqual([{ url: `${zone.origin}/token`, authorization: expect.stringMatching(/^Basic /) }]);
    });
  });

  describe('P5 RFC 9207 iss in the authorization response', () => {
    /** A browser that drops `iss` from the redirect back to the callback; `visit` settles with the callback's status. */
    function dropIss() {
      let visit: Promise<number> = Promise.resolve(0);
      const open = (url: string) => {
        visit = (async () => {
          const location = new URL((await fetch(url, { redirect: 'manual' })).headers.get('location')!);
          location.searchParams.delete('iss');
          return (await fetch(location)).status;
        })();
        return visit.then(() => undefined);
      };
      return { open, visit: () => visit };
    }

    it('P5 the zone promises iss (authorization_response_iss_parameter_supported: true), the callback lacks it → refused, no code redeemed', async () => {
      expect(zone.metadata().authorization_response_iss_parameter_supported).toBe(true);
      const browserWithoutIss = dropIss();
      const before = zone.tokenRequests.length;
      const login = authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, openBrowser: browserWithoutIss.open, timeoutMs: 5_000 });
      await expect(login).rejects.toMatchObject({ name: 'PkceLoginError', code: 'issuer_missing' });
      expect(await browserWithoutIss.visit()).toBe(400);
      expect(zone.tokenRequests.length).toBe(before);
    });

    it('P5 a zone that does not promise iss: the same answer without iss completes', async () => {
      zone.metadataOverrides = { authorization_response_iss_parameter_supported: undefined };
      try {
        const browserWithoutIss = dropIss();
        const tokens = await authenticate({ clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, openBrowser: browserWithoutIss.open, timeoutMs: 5_000 });
        expect(await browserWithoutIss.visit()).toBe(200);
        expect(tokens.accessToken).toBeTruthy();
      } finally {
        zone.metadataOverrides = {};
      }
    });

    it('P5 an iss naming another zone → issuer_mismatch, no code redeemed', async () => {
      const before = zone.tokenRequests.length;
      const login = authenticate({
        clientId: 'cli', resourceUrl: api.url, wwwAuthenticate: await challenge(), redirectUri, timeoutMs: 5_000,
        openBrowser: async (url) => {
          const location = new URL((await fetch(url, { redirect: 'manual' })).headers.get('location')!);
          location.searchParams.set('iss', 'https://as.example.com');
          await fetch(location);
        },
      });
      await expect(login).rejects.toMatchObject({ code: 'issuer_mismatch' });
      expect(zone.tokenRequests.length).toBe(before);
    });
  });
});

/** The status line's code for a GET of `target` written verbatim to the callback listener. */
function rawStatus(redirectUri: string, target: string): Promise<number> {
  const { hostname, port } = new URL(redirectUri);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname === 'localhost' ? '127.0.0.1' : hostname);
    let head = '';
    socket.on('data', (chunk) => (head += chunk.toString('latin1')));
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)));
    socket.on('error', reject);
    socket.write(`GET ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`);
  });
}
