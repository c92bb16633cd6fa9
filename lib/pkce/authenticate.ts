import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ClientSecret } from '../exchange/client-authentication.js';
import type { FetchLike } from '../interfaces/keycard-module-options.interface.js';
import { MAX_BODY_BYTES, USER_AGENT } from '../keycard.constants.js';
import { isLoopbackHost } from '../loopback.js';
import { findChallenge } from '../www-authenticate.js';
import { fetchZoneJson, fetchZoneMetadataDocument, readCappedText } from '../zone/zone-fetch.js';

/** Options of {@link authenticate}. @publicApi */
export interface AuthenticateOptions {
  /** The OAuth client registered at the zone for this login (a CLI, a local agent …). */
  clientId: string;
  /**
   * For confidential clients; sent with `client_secret_basic`, and only to a token endpoint on the
   * zone's own origin over https (http only on loopback): otherwise the login fails before any
   * request carries it.
   */
  clientSecret?: string;
  /**
   * The issuer identifier of the zone you mean to sign in to. When given, the login fails
   * (`unexpected_issuer`) unless the resource metadata's `authorization_servers` names it, and uses
   * that zone. @default the first authorization server the resource metadata names
   */
  expectedIssuer?: string;
  /** The protected API URL that was called (or the resource identifier). */
  resourceUrl: string;
  /** The `WWW-Authenticate` header of the 401 the API answered; fetched from `resourceUrl` when absent. */
  wwwAuthenticate?: string;
  /**
   * Scopes to ask for. @default the challenge's `scope` when it has one (the scopes the API asked
   * for), else the resource's `scopes_supported`; never more.
   */
  scopes?: string[];
  /** Loopback redirect URI registered for the client. @default 'http://localhost:8765/callback' */
  redirectUri?: string;
  /** Opens the authorization URL. @default the system browser (`xdg-open` / `open` / `start`) */
  openBrowser?: (url: string) => void | Promise<void>;
  /** How long to wait for the user, in ms. @default 120000 */
  timeoutMs?: number;
  /** `fetch` for every call (metadata, token endpoint). @default globalThis.fetch */
  fetch?: FetchLike;
}

/** The tokens of a finished login. @publicApi */
export interface PkceTokens {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly expiresIn?: number;
  readonly refreshToken?: string;
  readonly idToken?: string;
  readonly scope: string;
  /** The resource the token is for, and the zone that issued it. */
  readonly resource: string;
  readonly issuer: string;
}

/**
 * Why a login failed: `code` is the zone's OAuth error, or one of `invalid_challenge`,
 * `invalid_resource_metadata`, `invalid_zone_metadata`, `unexpected_issuer`, `insecure_issuer`,
 * `token_endpoint_origin`, `issuer_mismatch`, `issuer_missing`, `invalid_response`, `timeout`,
 * `listen_failed`, `browser_failed`.
 * @publicApi
 */
export class PkceLoginError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'PkceLoginError';
  }
}

const DEFAULT_REDIRECT_URI = 'http://localhost:8765/callback';
/** An OAuth `error` value worth passing on as a `PkceLoginError` code (RFC 6749 §5.2 charset, bounded). */
const OAUTH_ERROR_CODE = /^[\x21-\x7E]{1,64}$/;
const base64url = (bytes: Buffer) => bytes.toString('base64url');

/**
 * Signs a user in to the zone that protects `resourceUrl`, for trying things locally: reads the
 * resource metadata named in the API's challenge (RFC 9728), discovers the zone (RFC 8414), runs
 * authorization code + PKCE S256 (RFC 7636) with `state` checked and the RFC 8707 `resource` on
 * both legs, receiving the code on a loopback listener, and returns the tokens. After a step-up
 * challenge (RFC 9470, 401 `insufficient_user_authentication`) the authorization request carries
 * its `acr_values` and `max_age`.
 * @publicApi
 */
export async function authenticate(options: AuthenticateOptions): Promise<PkceTokens> {
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const redirect = new URL(options.redirectUri ?? DEFAULT_REDIRECT_URI);
  if (redirect.protocol !== 'http:' || !isLoopbackHost(redirect.hostname) || !redirect.port) {
    throw new TypeError("authenticate: 'redirectUri' must be an http URL on a loopback host with a port");
  }
  const challengeHeader = options.wwwAuthenticate ?? (await fetchChallenge(fetchFn, options.resourceUrl));
  // RFC 9110 §11: the Bearer challenge among any others, parameter names case-insensitive (P1).
  const challenge = findChallenge(challengeHeader, 'Bearer');
  const prmUrl = challenge?.params.get('resource_metadata');
  if (!prmUrl) throw new PkceLoginError('the challenge names no resource_metadata', 'invalid_challenge');
  const prm = (await fetchZoneJson(fetchFn, prmUrl)) as Record<string, unknown>;
  const resource = prm?.resource;
  // RFC 9728 §3.3: the document must describe the resource that was called.
  if (typeof resource !== 'string' || !coversUrl(resource, options.resourceUrl)) {
    throw new PkceLoginError('the resource metadata describes another resource', 'invalid_resource_metadata');
  }
  const issuer = chooseIssuer(prm, options);
  const zone = await fetchZoneMetadataDocument(fetchFn, issuer);
  const { authorization_endpoint: authorizationEndpoint, token_endpoint: tokenEndpoint } = zone;
  if (typeof authorizationEndpoint !== 'string' || typeof tokenEndpoint !== 'string') {
    throw new PkceLoginError('the zone publishes no authorization or token endpoint', 'invalid_zone_metadata');
  }
  if (options.clientSecret !== undefined && !sameOrigin(tokenEndpoint, issuer)) {
    throw new PkceLoginError('the zone names a token endpoint on another origin: the client secret is not sent there', 'token_endpoint_origin');
  }
  const scopes = options.scopes ?? scopesAskedFor(challenge?.params.get('scope'), prm.scopes_supported);
  const verifier = base64url(randomBytes(32));
  const state = base64url(randomBytes(16));
  const url = new URL(authorizationEndpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: options.clientId,
    redirect_uri: redirect.href,
    ...(scopes.length > 0 ? { scope: scopes.join(' ') } : {}),
    state,
    code_challenge: base64url(createHash('sha256').update(verifier).digest()),
    code_challenge_method: 'S256',
    resource,
    ...stepUpOf(challenge),
  }).toString();

  // RFC 9207 §2.4: a zone that promises `iss` in its answers is only believed when it is there (P5).
  const issRequired = zone.authorization_response_iss_parameter_supported === true;
  const code = await receiveCode(redirect, { state, issuer, issRequired }, options.timeoutMs ?? 120_000, () =>
    (options.openBrowser ?? openSystemBrowser)(url.href),
  );
  return redeem(fetchFn, tokenEndpoint, options, { code, verifier, redirectUri: redirect.href, resource, issuer });
}

async function fetchChallenge(fetchFn: FetchLike, resourceUrl: string): Promise<string | null> {
  const response = await fetchFn(resourceUrl, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(5_000), headers: { 'user-agent': USER_AGENT } });
  await response.body?.cancel().catch(() => undefined);
  return response.headers.get('www-authenticate');
}

/**
 * The zone to sign in to: `expectedIssuer` when the resource metadata names it, else the first
 * one it names. With a client secret, the zone must be https (or http on loopback), checked before
 * anything is sent to it (P4).
 */
function chooseIssuer(prm: Record<string, unknown>, options: AuthenticateOptions): string {
  const named = Array.isArray(prm.authorization_servers) ? prm.authorization_servers.filter((s) => typeof s === 'string') : [];
  if (options.expectedIssuer !== undefined && !named.includes(options.expectedIssuer)) {
    throw new PkceLoginError('the resource metadata does not name the expected authorization server', 'unexpected_issuer');
  }
  const issuer = options.expectedIssuer ?? named[0];
  if (issuer === undefined) throw new PkceLoginError('the resource metadata names no authorization server', 'invalid_resource_metadata');
  if (options.clientSecret !== undefined && !isSecureOrigin(issuer)) {
    throw new PkceLoginError('the authorization server is not https: the client secret is not sent there', 'insecure_issuer');
  }
  return issuer;
}

/**
 * RFC 9470 §4: after a 401 `insufficient_user_authentication`, the authorization request carries the
 * challenge's `acr_values` and `max_age`, so the user signs in as strongly and as recently as the API asks.
 */
export function stepUpOf(challenge: ReturnType<typeof findChallenge>): Record<string, string> {
  if (challenge?.params.get('error') !== 'insufficient_user_authentication') return {};
  const asked: Record<string, string> = {};
  const acrValues = challenge.params.get('acr_values');
  const maxAge = challenge.params.get('max_age');
  if (acrValues !== undefined && acrValues !== '') asked.acr_values = acrValues;
  if (maxAge !== undefined && /^\d{1,10}$/.test(maxAge)) asked.max_age = maxAge;
  return asked;
}

/** The challenge's `scope` (RFC 6750 §3: space-delimited) when it names any, else `scopes_supported`. */
function scopesAskedFor(challengeScope: string | undefined, supported: unknown): string[] {
  const asked = (challengeScope ?? '').split(' ').filter((scope) => scope !== '');
  if (asked.length > 0) return asked;
  return Array.isArray(supported) ? supported.filter((scope): scope is string => typeof scope === 'string') : [];
}

function isSecureOrigin(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'https:' || (parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname));
  } catch {
    return false;
  }
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

function coversUrl(resource: string, called: string): boolean {
  const a = new URL(resource);
  const b = new URL(called);
  const path = a.pathname.replace(/\/+$/, '');
  return a.origin === b.origin && (path === '' || b.pathname === path || b.pathname.startsWith(path + '/'));
}

/** What an authorization response must carry to belong to this login. */
interface ExpectedAnswer {
  readonly state: string;
  readonly issuer: string;
  /** The zone promised `iss` (RFC 9207 `authorization_response_iss_parameter_supported`). */
  readonly issRequired: boolean;
}

/**
 * Listens on the redirect URI's port (loopback only) until the zone sends the browser back. Only a
 * GET of the redirect path carrying this login's `state` settles the login; anything else (another
 * path, no query, a wrong state: a stray tab, a port scanner, a forged link) is answered 4xx and
 * changes nothing (P2).
 */
function receiveCode(redirect: URL, expected: ExpectedAnswer, timeoutMs: number, open: () => void | Promise<void>): Promise<string> {
  return new Promise((resolve, reject) => {
    const servers: Server[] = [];
    let settled = false;
    const finish = (error: Error | undefined, code?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const server of servers) server.close();
      for (const server of servers) server.closeAllConnections?.();
      if (error) reject(error);
      else resolve(code!);
    };
    const timer = setTimeout(() => finish(new PkceLoginError(`no answer from the browser within ${timeoutMs} ms`, 'timeout')), timeoutMs);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const page = (status: number, text: string) => {
        res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
        res.end(text);
      };
      // The request target is the client's to choose: one the URL parser refuses (`//x:99999/…`,
      // `/\\x:0`) is a stray request like any other, never an exception in this handler.
      let url: URL;
      try {
        url = new URL(req.url ?? '/', redirect.origin);
      } catch {
        return page(400, 'Bad request.');
      }
      if (url.pathname !== redirect.pathname) return page(404, 'Not found.');
      if (req.method !== 'GET') return page(405, 'Method not allowed.');
      const params = url.searchParams;
      const states = params.getAll('state');
      if (settled || states.length !== 1 || states[0] !== expected.state) {
        return page(400, 'This answer does not belong to the login in progress (state mismatch); it was ignored.');
      }
      const iss = params.get('iss');
      if (iss === null && expected.issRequired) {
        page(400, 'Login failed: the answer does not say which authorization server sent it. You can close this window.');
        return finish(new PkceLoginError('the authorization response carries no iss, which the zone promised (RFC 9207)', 'issuer_missing'));
      }
      if (iss !== null && iss !== expected.issuer) {
        page(400, 'Login failed: the answer came from another authorization server. You can close this window.');
        return finish(new PkceLoginError('the authorization response iss does not match the zone', 'issuer_mismatch'));
      }
      const error = params.get('error');
      if (error !== null) {
        page(400, 'Login failed at the authorization server. You can close this window.');
        return finish(new PkceLoginError('the authorization server refused the login', OAUTH_ERROR_CODE.test(error) ? error : 'invalid_response'));
      }
      const code = params.get('code');
      if (!code) {
        page(400, 'Login failed: no authorization code. You can close this window.');
        return finish(new PkceLoginError('the authorization response carries no code', 'invalid_response'));
      }
      page(200, 'Signed in. You can close this window and return to the terminal.');
      finish(undefined, code);
    };
    const hosts = redirect.hostname === 'localhost' ? ['127.0.0.1', '::1'] : [redirect.hostname.replace(/^\[(.*)\]$/, '$1')];
    let listening = 0;
    let failures = 0;
    for (const host of hosts) {
      const server = createServer(handler);
      servers.push(server);
      server.once('error', (error) => {
        failures += 1;
        // ::1 may be missing on a machine without IPv6; one listener is enough.
        if (failures === hosts.length) finish(new PkceLoginError(`cannot listen on ${redirect.host}: ${(error as NodeJS.ErrnoException).code}`, 'listen_failed'));
      });
      server.listen(Number(redirect.port), host, () => {
        listening += 1;
        if (listening === 1) {
          Promise.resolve()
            .then(open)
            .catch((error: unknown) => finish(new PkceLoginError(`could not open the browser: ${(error as Error).message}`, 'browser_failed')));
        }
      });
    }
  });
}

async function redeem(
  fetchFn: FetchLike,
  tokenEndpoint: string,
  options: AuthenticateOptions,
  grant: { code: string; verifier: string; redirectUri: string; resource: string; issuer: string },
): Promise<PkceTokens> {
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code: grant.code,
    redirect_uri: grant.redirectUri,
    code_verifier: grant.verifier,
    resource: grant.resource,
  });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'user-agent': USER_AGENT };
  if (options.clientSecret) {
    Object.assign(headers, (await new ClientSecret(options.clientId, options.clientSecret).authenticate()).headers);
  } else {
    form.set('client_id', options.clientId);
  }
  const response = await fetchFn(tokenEndpoint, { method: 'POST', redirect: 'manual', signal: AbortSignal.timeout(10_000), headers, body: form.toString() });
  let body: Record<string, unknown> | undefined;
  try {
    body = JSON.parse(await readCappedText(response, MAX_BODY_BYTES)) as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  if (response.status !== 200 || typeof body?.access_token !== 'string' || typeof body.token_type !== 'string') {
    const code = typeof body?.error === 'string' && OAUTH_ERROR_CODE.test(body.error) ? body.error : 'invalid_response';
    throw new PkceLoginError(`the token endpoint answered HTTP ${response.status} ${code}`, code);
  }
  return Object.freeze({
    accessToken: body.access_token,
    tokenType: body.token_type,
    expiresIn: typeof body.expires_in === 'number' ? body.expires_in : undefined,
    refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : undefined,
    idToken: typeof body.id_token === 'string' ? body.id_token : undefined,
    scope: typeof body.scope === 'string' ? body.scope : '',
    resource: grant.resource,
    issuer: grant.issuer,
  });
}

/** Best effort: print the URL, and ask the desktop to open it. */
function openSystemBrowser(url: string): void {
  console.log(`Open this URL to sign in:\n  ${url}`);
  const command = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'cmd' : 'xdg-open';
  const args = process.platform === 'win32' ? ['/c', 'start', '', url] : [url];
  try {
    spawn(command, args, { stdio: 'ignore', detached: true }).on('error', () => undefined).unref();
  } catch {
    // No desktop: the printed URL is enough.
  }
}
