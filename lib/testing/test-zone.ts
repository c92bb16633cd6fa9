import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { isLoopbackAddress, isLoopbackHost } from '../loopback.js';
import { signJws, verifyJws } from '../jws-crypto.js';
import type { KeycardModuleOptions } from '../interfaces/keycard-module-options.interface.js';
import { parseTokenForm } from './token-form.js';
import { SsfTransmitter, type SsfTransmitterOptions } from './ssf-transmitter.js';
import { IntrospectionEndpoint } from './introspection-endpoint.js';
import { TokenEndpoint, type ImpersonationPolicy, type PendingCode, type RecordedTokenRequest, type TestZoneClient } from './token-endpoint.js';

/** A fault a test zone endpoint can be switched to (catalogue §E, §F). */
export type ZoneFault =
  | { kind: 'reset' } // accept, then drop the connection
  | { kind: 'hang' } // accept, never answer
  | { kind: 'slow'; delayMs: number } // answer normally after a delay
  | { kind: 'drip'; intervalMs: number } // headers at once, then one byte per interval, forever
  | { kind: 'status'; status: number; body?: string; contentType?: string; headers?: Record<string, string>; times?: number }
  | { kind: 'redirect'; location: string }
  | { kind: 'json'; body: unknown } // a 200 JSON answer of the test's choosing
  | { kind: 'oversized'; bytes: number } // a 200 JSON answer larger than any cap
  | { kind: 'throw' } // the endpoint's handler throws a plain Error (the zone answers 500)
  | { kind: 'reject' }; // the endpoint's handler rejects asynchronously (the zone answers 500)

/** The zone endpoints a fault can be set on. */
export type ZoneEndpoint = 'metadata' | 'oidc' | 'jwks' | 'token' | 'introspection';

/** A signing key of the zone: the private half signs, the public half is published. */
export interface ZoneKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** Extra members to publish in this key's JWK (e.g. `use`, `key_ops`), or members to drop (`undefined`). */
  readonly jwkOverrides?: Record<string, unknown>;
}

export interface TestZoneOptions {
  /** Port to listen on. @default 0 (any free port) */
  port?: number;
  /** Loopback address to bind. Anything else is refused. @default '127.0.0.1' */
  host?: string;
  /** Path of the issuer, e.g. `/tenant1` (RFC 8414 §3.1 path insertion). @default '' */
  issuerPath?: string;
  /** `aud` of issued tokens when a test does not give one. */
  audience?: string;
  /** Clients the token endpoint knows. */
  clients?: TestZoneClient[];
  /** Resources the zone issues tokens for, with the scopes each offers. */
  resources?: Record<string, string[]>;
  /**
   * The user the authorization endpoint signs in without asking (auto-approved: a development
   * zone has no login page). Claims of the tokens it gets; a fresh `sid` and `auth_time` are added
   * per sign-in, and `acr` becomes the first of the request's `acr_values` when it has any (RFC 9470
   * §4: the user signs in as strongly as asked), else stays `devUser.acr`.
   * @default { sub: 'dev-user' }
   */
  devUser?: Record<string, unknown>;
  /** Serve https with this key and certificate (PEM), e.g. a self-signed one to test TLS failures. */
  tls?: { key: string; cert: string };
  /** Whether substitute-user exchanges (impersonation) are allowed. @default 'refused' */
  impersonation?: ImpersonationPolicy;
  /**
   * Give the keys ids unique to this start (`rs1-<random>`, `ec1-<random>`) instead of `rs1` and
   * `ec1`: an app still running against a restarted zone then meets an unknown `kid` and refetches
   * the key set, instead of holding the old `rs1` and refusing every new token. The default kid
   * of {@link TestZone.issueToken} follows. @default false
   */
  freshKeyIds?: boolean;
  /**
   * Serve `POST /dev/token` (JSON `{ agent?, user?, scopes?, audience?, expiresIn? }` → `{ access_token,
   * token_type, expires_in }`): a token for anyone, without credentials, for `curl` in local
   * development (the `nestjs-keycard token` command). Without `audience`, the token is for the zone's
   * first resource (as the command's default). Answers loopback clients only. @default false
   */
  devTokenEndpoint?: boolean;
}

/** Who a {@link TestZone.tokenFor} token speaks for. */
export interface TokenForOptions {
  /** The agent (`client_id`). @default 'cli-1' */
  agent?: string;
  /** The user (`sub`); without one the agent acts as itself (`sub` = the agent). */
  user?: string;
  /** Granted scopes, written as the space-separated `scope` claim. @default none */
  scopes?: readonly string[];
  /** The user's session (`sid`). @default none */
  session?: string;
  /** The audience (`aud`). @default the zone's `audience` option */
  audience?: string | string[];
  /** More claims, or `undefined` to leave one out (e.g. `{ exp: … }`). */
  claims?: Record<string, unknown>;
  /** Binds the token to this DPoP key: `cnf.jkt` = its thumbprint (RFC 9449 §6.1). */
  dpopKey?: { readonly thumbprint: string };
}

export interface IssueTokenOptions {
  /** Which zone key signs. @default 'rs1' (its fresh name with `freshKeyIds`) */
  kid?: string;
  /** JWS `alg` written in the header. @default the key's algorithm */
  alg?: string;
  /** Header members to add or (with `undefined`) remove. */
  header?: Record<string, unknown>;
  /** Leave `kid` out of the header. */
  omitKid?: boolean;
}

/**
 * A real OAuth 2.0 authorization server on loopback, for tests and demos only: RFC 8414 and OIDC
 * discovery documents, a JWKS with RSA and EC keys, token issuing, key rotation, fault switches
 * and request counters. It refuses to bind anything but a loopback address.
 * @publicApi
 */
export class TestZone {
  /** Requests served per endpoint. */
  readonly counts = { metadata: 0, oidc: 0, jwks: 0, token: 0, authorize: 0, introspection: 0 };
  /**
   * The RFC 7662 endpoint (`POST /introspect`, advertised as `introspection_endpoint`): its
   * recorded `requests` (headers and form) and `answerFor(token, answer)` to steer it.
   */
  readonly introspection: IntrospectionEndpoint;
  /** When set, the authorization endpoint answers with this OAuth error instead of a code. */
  authorizeError?: string;
  /** The query of every authorization request (`/authorize`), oldest first: what a client asked for (`acr_values`, `max_age`, `scope`). */
  readonly authorizeRequests: URLSearchParams[] = [];
  /** Every request the token endpoint received (headers and decoded form), oldest first. */
  readonly tokenRequests: RecordedTokenRequest[] = [];
  /**
   * What endpoint handlers threw or rejected (a fault of kind `throw`/`reject`, or a bug), oldest
   * first. Each such request was answered 500 `{"error":"server_error"}`; the zone kept serving.
   */
  readonly handlerErrors: unknown[] = [];
  /** Fault per endpoint; `undefined` serves normally. */
  readonly faults: Partial<Record<ZoneEndpoint, ZoneFault>> = {};
  /** When set, served as the JWKS body instead of the zone's keys. */
  jwksOverride?: unknown;
  /** When set, members merged into (or, with `undefined`, removed from) the metadata document. */
  metadataOverrides: Record<string, unknown> = {};
  /**
   * The zone's impersonation policy: `allowed` lets clients exchange a user identifier
   * (`urn:keycard:params:oauth:token-type:substitute-user`); `refused` answers `unauthorized_client`.
   */
  impersonation: ImpersonationPolicy;
  /** Resources the zone refuses, with the OAuth error it answers (400), for every grant. */
  readonly refusals = new Map<string, string>();
  /**
   * DPoP at the token endpoint (RFC 9449 §5, §8): a request with a valid `DPoP` proof gets a token
   * bound to its key (`cnf.jkt`, `token_type: "DPoP"`). `nonce`: proofs must carry it, else 400
   * `use_dpop_nonce` with `DPoP-Nonce`; `bind: false`: the proof is ignored and a Bearer token issued.
   */
  dpop: { nonce?: string; bind: boolean } = { bind: true };

  private keys: ZoneKey[] = [];
  /** The clients the token and introspection endpoints know. */
  private readonly clients: TestZoneClient[];
  /** The kid {@link issueToken} signs with when none is given: `rs1`, or its fresh name. */
  private defaultKid = 'rs1';
  private readonly tokenEndpoint: TokenEndpoint;
  private readonly codes = new Map<string, PendingCode>();
  private readonly resources: Record<string, string[]>;
  private rotations = 0;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: Server,
    readonly issuer: string,
    private readonly options: TestZoneOptions,
  ) {
    this.resources = { ...options.resources };
    this.clients = [...(options.clients ?? [])];
    this.introspection = new IntrospectionEndpoint({
      issuer,
      authenticateClient: (headers, form) => this.tokenEndpoint.authenticate(headers, form),
      verifyOwnToken: (token) => this.verifyOwnToken(token),
    });
    this.impersonation = options.impersonation ?? 'refused';
    const endpointUrl = () => `${this.origin}/token`;
    this.tokenEndpoint = new TokenEndpoint(
      {
        issuer,
        get tokenEndpoint() {
          return endpointUrl();
        },
        resources: this.resources,
        issueToken: (claims) => this.issueToken(claims),
        verifyOwnToken: (token) => this.verifyOwnToken(token),
        redeemCode: (code) => {
          const pending = this.codes.get(code);
          this.codes.delete(code);
          return pending;
        },
        refusalFor: (resource) => this.refusals.get(resource),
        impersonationPolicy: () => this.impersonation,
        dpopPolicy: () => this.dpop,
      },
      this.clients,
    );
  }

  /**
   * Starts a zone on loopback with RSA key `rs1` (RS256) and EC key `ec1` (ES256), or fresh ids of
   * them with `freshKeyIds`.
   * @throws TypeError for an address that is not loopback; the listen error (e.g. `EADDRINUSE`).
   */
  static async start(options: TestZoneOptions = {}): Promise<TestZone> {
    const host = options.host ?? '127.0.0.1';
    if (!isLoopbackHost(host)) throw new TypeError(`TestZone binds loopback addresses only, not ${host}`);
    const server = options.tls ? createTlsServer({ key: options.tls.key, cert: options.tls.cert }) : createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const hostInUrl = host.includes(':') ? `[${host}]` : host;
    const scheme = options.tls ? 'https' : 'http';
    const zone = new TestZone(server, `${scheme}://${hostInUrl}:${port}${options.issuerPath ?? ''}`, options);
    const suffix = options.freshKeyIds ? `-${randomBytes(4).toString('hex')}` : '';
    zone.keys = [TestZone.generateKey(`rs1${suffix}`, 'RS256'), TestZone.generateKey(`ec1${suffix}`, 'ES256')];
    zone.defaultKid = zone.keys[0].kid;
    server.on('connection', (socket: Socket) => {
      zone.sockets.add(socket);
      socket.once('close', () => zone.sockets.delete(socket));
    });
    server.on('request', (req, res) => zone.answer(req, res));
    return zone;
  }

  /** Makes a key pair: RSA (2048 bits unless `rsaBits`) for RS/PS algorithms, EC for ES*. */
  static generateKey(kid: string, alg: string, rsaBits = 2048): ZoneKey {
    const pair = alg.startsWith('ES')
      ? generateKeyPairSync('ec', { namedCurve: { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }[alg]! })
      : generateKeyPairSync('rsa', { modulusLength: rsaBits });
    return { kid, alg, privateKey: pair.privateKey, publicKey: pair.publicKey };
  }

  /** Connections currently open to the zone (to check that clients close what they abort). */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** Origin of the zone (scheme, host and port). */
  get origin(): string {
    return new URL(this.issuer).origin;
  }

  get jwksUri(): string {
    return `${this.origin}/jwks`;
  }

  /** The zone's current keys (the first RSA key signs by default). */
  get signingKeys(): readonly ZoneKey[] {
    return this.keys;
  }

  key(kid: string): ZoneKey {
    const key = this.keys.find((k) => k.kid === kid);
    if (!key) throw new Error(`TestZone has no key ${kid}`);
    return key;
  }

  /** Publishes another key (e.g. a weak or odd one a test needs). */
  addKey(key: ZoneKey): void {
    this.keys.push(key);
  }

  /** Lets one more client authenticate at the token and introspection endpoints (replacing one with the same id). */
  addClient(client: TestZoneClient): void {
    const at = this.clients.findIndex((known) => known.clientId === client.clientId);
    if (at >= 0) this.clients.splice(at, 1);
    this.clients.push(client);
  }

  /** Lets the token endpoint issue tokens for `resource` with these scopes. */
  registerResource(resource: string, scopes: string[]): void {
    this.resources[resource] = [...scopes];
  }

  /**
   * Refuses every token for `resource` (exchange, client credentials, impersonation) with a 400 and
   * `error`, e.g. to test a grant that gets some resources and not others.
   */
  refuseResource(resource: string, error = 'invalid_target'): void {
    this.refusals.set(resource, error);
  }

  /** Withdraws a key from the JWKS (catalogue E20). */
  removeKey(kid: string): void {
    this.keys = this.keys.filter((k) => k.kid !== kid);
  }

  /** Adds a fresh RSA key `rs<N>`, returns its kid; the old keys stay published. */
  rotateKeys(): string {
    this.rotations += 1;
    const kid = `rs${this.rotations + 1}`;
    this.keys.push(TestZone.generateKey(kid, 'RS256'));
    return kid;
  }

  /**
   * Issues an access token. Claims default to a valid token for `options.audience`: `iss`, `sub`
   * `user-1`, `client_id` `cli-1`, `iat` now, `exp` in 5 minutes, a fresh `jti`; a claim given as
   * `undefined` is left out.
   */
  issueToken(claims: Record<string, unknown> = {}, options: IssueTokenOptions = {}): string {
    const key = this.key(options.kid ?? this.defaultKid);
    const now = Math.floor(Date.now() / 1000);
    const payload = dropUndefined({
      iss: this.issuer,
      aud: this.options.audience,
      sub: 'user-1',
      client_id: 'cli-1',
      iat: now,
      exp: now + 300,
      jti: randomUUID(),
      ...claims,
    });
    const header = dropUndefined({
      alg: options.alg ?? key.alg,
      typ: 'at+jwt',
      kid: options.omitKid ? undefined : key.kid,
      ...options.header,
    });
    return signJws(header, payload, key.privateKey, options.alg ?? key.alg);
  }

  /**
   * An opaque (non-JWT) access token and the answer the introspection endpoint gives for it:
   * `active: true`, this zone's `iss`, `aud` the zone's `audience` option, `sub` `user-1`,
   * `client_id` `cli-1`, `exp` in 5 minutes, then `answer` (a member given as `undefined` is left out).
   */
  issueOpaqueToken(answer: Record<string, unknown> = {}): string {
    const token = randomBytes(16).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    this.introspection.answerFor(
      token,
      dropUndefined({ active: true, iss: this.issuer, aud: this.options.audience, sub: 'user-1', client_id: 'cli-1', token_type: 'Bearer', iat: now, exp: now + 300, ...answer }),
    );
    return token;
  }

  /** This zone as a Shared Signals transmitter (SETs signed with its keys, RFC 8935 push). */
  ssfTransmitter(options: SsfTransmitterOptions): SsfTransmitter {
    return new SsfTransmitter(this, options);
  }

  /**
   * A valid access token for an agent, acting for a user or as itself, in one call:
   * `zone.tokenFor({ agent: 'agent-a', user: 'alice', scopes: ['orders:read'] })`.
   * Signed by `rs1`, `typ: at+jwt`, valid 5 minutes (see {@link issueToken} for odd tokens).
   */
  tokenFor(who: TokenForOptions = {}): string {
    const agent = who.agent ?? 'cli-1';
    return this.issueToken({
      client_id: agent,
      sub: who.user ?? agent,
      scope: who.scopes?.length ? who.scopes.join(' ') : undefined,
      sid: who.session,
      ...(who.audience !== undefined ? { aud: who.audience } : {}),
      ...(who.dpopKey !== undefined ? { cnf: { jkt: who.dpopKey.thumbprint } } : {}),
      ...who.claims,
    });
  }

  /**
   * Module options that point an app at this zone, to merge over the app's own in a test:
   * `Test.createTestingModule({ imports: [AppModule] }).overrideProvider(KEYCARD_OPTIONS_OVERRIDE)
   * .useValue(zone.moduleOptions())`. `zoneUrl` is this zone; `resource` is the zone's `audience`
   * option when one was given (so the tokens it issues are for the app); `extra` wins over both.
   */
  moduleOptions(extra: Partial<KeycardModuleOptions> = {}): Partial<KeycardModuleOptions> & { zoneUrl: string } {
    return {
      zoneUrl: this.issuer,
      ...(this.options.audience !== undefined ? { resource: this.options.audience } : {}),
      ...extra,
    };
  }

  /** The zone's RFC 8414 metadata document. */
  metadata(): Record<string, unknown> {
    return dropUndefined({
      issuer: this.issuer,
      jwks_uri: this.jwksUri,
      token_endpoint: `${this.origin}/token`,
      introspection_endpoint: `${this.origin}/introspect`,
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      authorization_endpoint: `${this.origin}/authorize`,
      response_types_supported: ['code'],
      grant_types_supported: ['authorization_code', 'client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      authorization_response_iss_parameter_supported: true,
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      code_challenge_methods_supported: ['S256'],
      ...this.metadataOverrides,
    });
  }

  /** The JWKS as served (public members only). */
  jwks(): { keys: Record<string, unknown>[] } {
    return {
      keys: this.keys.map((k) =>
        dropUndefined({
          ...(k.publicKey.export({ format: 'jwk' }) as Record<string, unknown>),
          kid: k.kid,
          alg: k.alg,
          use: 'sig',
          ...k.jwkOverrides,
        }),
      ),
    };
  }

  /** Clears faults, overrides and counters. */
  reset(): void {
    for (const endpoint of Object.keys(this.faults) as ZoneEndpoint[]) delete this.faults[endpoint];
    this.jwksOverride = undefined;
    this.metadataOverrides = {};
    this.counts.metadata = this.counts.oidc = this.counts.jwks = this.counts.token = this.counts.authorize = this.counts.introspection = 0;
    this.introspection.reset();
    this.authorizeError = undefined;
    this.tokenRequests.length = 0;
    this.handlerErrors.length = 0;
    this.refusals.clear();
    this.impersonation = this.options.impersonation ?? 'refused';
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Every request runs here. Whatever an endpoint handler throws or rejects is answered 500 with a
   * fixed body for that request alone, so a fault or a bug never becomes an unhandled rejection
   * that ends the test (or demo) process hosting the zone.
   */
  private answer(req: IncomingMessage, res: ServerResponse): void {
    (async () => this.route(req, res))().catch((error: unknown) => {
      this.handlerErrors.push(error);
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: 'server_error' });
    });
  }

  private route(req: IncomingMessage, res: ServerResponse): Promise<void> | void {
    const path = (req.url ?? '/').split('?')[0];
    const issuerPath = new URL(this.issuer).pathname.replace(/\/$/, '');
    if (path === `/.well-known/oauth-authorization-server${issuerPath}`) {
      this.counts.metadata += 1;
      return this.serve('metadata', res, () => ({ status: 200, body: this.metadata() }));
    }
    if (path === `${issuerPath}/.well-known/openid-configuration`) {
      this.counts.oidc += 1;
      return this.serve('oidc', res, () => ({ status: 200, body: this.metadata() }));
    }
    if (path === '/token') {
      // Browser clients (Swagger UI's sign-in, a SPA) call the token endpoint from their own origin.
      // No cookies are involved, so any origin may read the answer; the code and PKCE protect it.
      res.setHeader('access-control-allow-origin', '*');
      if (req.method === 'OPTIONS') return answerPreflight(res);
    }
    if (path === '/token' && req.method === 'POST') {
      this.counts.token += 1;
      return this.serveToken(req, res);
    }
    if (path === '/introspect' && req.method === 'POST') {
      this.counts.introspection += 1;
      return this.serveIntrospection(req, res);
    }
    if (path === '/authorize' && req.method === 'GET') {
      this.counts.authorize += 1;
      const params = new URL(req.url ?? '/', this.origin).searchParams;
      this.authorizeRequests.push(params);
      return this.authorize(params, res);
    }
    if (path === '/dev/token' && req.method === 'POST' && this.options.devTokenEndpoint) {
      return this.serveDevToken(req, res);
    }
    if (path === '/jwks') {
      this.counts.jwks += 1;
      return this.serve('jwks', res, () => ({ status: 200, body: this.jwksOverride ?? this.jwks() }));
    }
    sendJson(res, 404, { error: 'not_found' });
  }

  /**
   * Verifies a token this zone issued (signature by one of its keys, issuer, expiry) and returns
   * its claims; undefined for anything else.
   */
  verifyOwnToken(token: string): Record<string, unknown> | undefined {
    const verified = verifyJws(token, (header) => this.keys.find((k) => k.kid === header.kid && k.alg === header.alg)?.publicKey);
    const claims = verified?.claims;
    if (!claims || claims.iss !== this.issuer || typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000) return undefined;
    return claims;
  }

  /**
   * RFC 6749 §4.1.1 with PKCE S256 required: auto-approves the dev user and redirects back with a
   * code (or with `authorizeError`). Never redirects to a URI the client did not register.
   */
  private authorize(params: URLSearchParams, res: ServerResponse): void {
    const client = this.options.clients?.find((c) => c.clientId === params.get('client_id'));
    const redirectUri = params.get('redirect_uri') ?? '';
    if (!client || !client.redirectUris?.includes(redirectUri)) {
      return sendJson(res, 400, { error: 'invalid_request', error_description: 'unknown client or redirect_uri' });
    }
    const back = new URL(redirectUri);
    const state = params.get('state');
    if (state !== null) back.searchParams.set('state', state);
    const challenge = params.get('code_challenge');
    const error =
      this.authorizeError ??
      (params.get('response_type') !== 'code' ? 'unsupported_response_type' : undefined) ??
      (!challenge || params.get('code_challenge_method') !== 'S256' ? 'invalid_request' : undefined);
    if (error) {
      back.searchParams.set('error', error);
    } else {
      const code = randomBytes(24).toString('base64url');
      this.codes.set(code, {
        clientId: client.clientId,
        redirectUri,
        codeChallenge: challenge!,
        resource: params.get('resource') ?? undefined,
        scope: params.get('scope') ?? undefined,
        user: { sub: 'dev-user', ...this.options.devUser, sid: randomUUID(), ...signIn(params) },
        expiresAt: Date.now() + 60_000,
      });
      back.searchParams.set('code', code);
    }
    back.searchParams.set('iss', this.issuer); // RFC 9207 §2: in error responses too
    res.writeHead(302, { location: back.href });
    res.end();
  }

  /** `POST /dev/token`: see {@link TestZoneOptions.devTokenEndpoint}. */
  private async serveDevToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isLoopbackAddress(req.socket.remoteAddress)) return sendJson(res, 403, { error: 'access_denied' });
    const asked = parseDevTokenRequest(await readBody(req, TOKEN_BODY_LIMIT));
    // No keep-alive, refusals included: a command-line client that outlives a zone restart must not reuse a dead socket.
    const close = { 'cache-control': 'no-store', connection: 'close' };
    if ('problem' in asked) return sendJson(res, 400, { error: 'invalid_request', error_description: asked.problem }, close);
    // A token for a resource the zone does not serve would be refused by every app (RFC 8707 §2).
    const known = Object.keys(this.resources);
    if (asked.audience !== undefined && known.length > 0 && !known.includes(asked.audience)) {
      return sendJson(res, 400, { error: 'invalid_target', error_description: `'${asked.audience}' is not a resource of this zone (known: ${known.join(', ')}; list it under 'resources' in keycard-zone.json)` }, close);
    }
    const expiresIn = asked.expiresIn ?? 3600;
    // No audience asked: the first resource, as the command's default (a token without `aud` is refused by every app).
    const audience = asked.audience ?? known[0];
    const token = this.tokenFor({ agent: asked.agent, user: asked.user, scopes: asked.scopes, audience, claims: { exp: Math.floor(Date.now() / 1000) + expiresIn } });
    sendJson(res, 200, { access_token: token, token_type: 'Bearer', expires_in: expiresIn }, close);
  }

  private async serveToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, TOKEN_BODY_LIMIT);
    if (body === undefined) return sendJson(res, 413, { error: 'invalid_request' });
    const form = parseTokenForm(req.headers['content-type'], body);
    if (form) this.tokenRequests.push({ headers: req.headers, form });
    return this.serve('token', res, () => this.tokenEndpoint.handle(req.headers, form));
  }

  private async serveIntrospection(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, TOKEN_BODY_LIMIT);
    if (body === undefined) return sendJson(res, 413, { error: 'invalid_request' });
    const form = parseTokenForm(req.headers['content-type'], body);
    this.introspection.requests.push({ url: req.url ?? '', headers: req.headers, form: form ?? {} });
    return this.serve('introspection', res, () => this.introspection.handle(req.headers, form));
  }

  private async serve(endpoint: ZoneEndpoint, res: ServerResponse, answer: () => ZoneAnswer): Promise<void> {
    const fault = this.faults[endpoint];
    if (fault?.kind === 'status' && fault.times !== undefined && --fault.times <= 0) delete this.faults[endpoint];
    if (!fault) return sendAnswer(res, answer());
    switch (fault.kind) {
      case 'reset':
        res.socket?.destroy();
        return;
      case 'hang':
        return;
      case 'slow':
        await this.delay(fault.delayMs);
        return sendAnswer(res, answer());
      case 'drip': {
        res.writeHead(200, { 'content-type': 'application/json' });
        const timer = setInterval(() => res.write(' '), fault.intervalMs);
        this.timers.add(timer);
        res.once('close', () => clearInterval(timer));
        return;
      }
      case 'status':
        res.writeHead(fault.status, { 'content-type': fault.contentType ?? 'application/json', ...fault.headers });
        res.end(fault.body ?? '{"error":"server_error"}');
        return;
      case 'redirect':
        res.writeHead(302, { location: fault.location });
        res.end();
        return;
      case 'json':
        return sendJson(res, 200, fault.body);
      case 'oversized':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"keys":[],"pad":"${'x'.repeat(fault.bytes)}"}`);
        return;
      case 'throw':
        throw new Error(`TestZone fault: the ${endpoint} handler threw`);
      case 'reject':
        await this.delay(0);
        throw new Error(`TestZone fault: the ${endpoint} handler rejected`);
    }
  }

  /** Resolves after `ms`, or never when the zone stops first. */
  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }
}

/** What an endpoint answers when no fault is set. */
interface ZoneAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** The largest token request body the zone reads; a larger one is answered 413. */
const TOKEN_BODY_LIMIT = 64 * 1024;

/**
 * A request body as text, or undefined when it exceeds `limit` bytes. The rest of an oversized body
 * is drained, not read, so the client still receives the answer rather than a reset connection.
 */
function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const collect = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      req.off('data', collect);
      req.resume();
      resolve(undefined);
    };
    req.on('data', collect);
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

/** What `POST /dev/token` may ask for. */
interface DevTokenRequest {
  agent?: string;
  user?: string;
  scopes?: string[];
  audience?: string;
  expiresIn?: number;
}

const DEV_TOKEN_FIELDS = ['agent', 'user', 'scopes', 'audience', 'expiresIn'];

/** The longest lifetime `POST /dev/token` grants, in seconds (a day). */
export const DEV_TOKEN_MAX_EXPIRES_IN = 86_400;

/**
 * The JSON body of a `POST /dev/token`, or what is wrong with it (not JSON, an unknown field, a
 * wrong type): a field the zone does not know is refused, not ignored, as the config file's are.
 */
function parseDevTokenRequest(body: string | undefined): DevTokenRequest | { problem: string } {
  let asked: Record<string, unknown>;
  try {
    asked = JSON.parse(body ?? '') as Record<string, unknown>;
  } catch {
    return { problem: 'the body is not JSON' };
  }
  if (typeof asked !== 'object' || asked === null || Array.isArray(asked)) return { problem: 'the body is not a JSON object' };
  const unknown = Object.keys(asked).filter((field) => !DEV_TOKEN_FIELDS.includes(field));
  if (unknown.length > 0) return { problem: `unknown field(s) ${unknown.map((field) => `'${field}'`).join(', ')} (known: ${DEV_TOKEN_FIELDS.join(', ')})` };
  const optionalString = (value: unknown) => value === undefined || (typeof value === 'string' && value.length > 0);
  const wrong = ['agent', 'user', 'audience'].find((field) => !optionalString(asked[field]));
  if (wrong !== undefined) return { problem: `'${wrong}' must be a non-empty string` };
  if (asked.scopes !== undefined && !(Array.isArray(asked.scopes) && asked.scopes.every((scope) => typeof scope === 'string'))) return { problem: "'scopes' must be a list of strings" };
  const expiresIn = asked.expiresIn;
  if (expiresIn !== undefined && !(Number.isInteger(expiresIn) && (expiresIn as number) > 0 && (expiresIn as number) <= DEV_TOKEN_MAX_EXPIRES_IN)) {
    return { problem: `'expiresIn' must be a whole number of seconds from 1 to ${DEV_TOKEN_MAX_EXPIRES_IN}` };
  }
  return asked as DevTokenRequest;
}

function sendAnswer(res: ServerResponse, answer: ZoneAnswer): void {
  sendJson(res, answer.status, answer.body, answer.headers);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) ?? 'null';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function dropUndefined(object: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

/**
 * The authentication of one auto-approved sign-in (RFC 9470 §6.1): `auth_time` now, and the
 * strongest `acr` the client asked for (`acr_values` lists them in order of preference).
 */
function signIn(params: URLSearchParams): Record<string, unknown> {
  const acr = params.get('acr_values')?.split(' ').find((value) => value !== '');
  return { auth_time: Math.floor(Date.now() / 1000), ...(acr === undefined ? {} : { acr }) };
}

/** A CORS preflight of the token endpoint (Fetch standard §3.2.2): a form POST with these headers. */
function answerPreflight(res: ServerResponse): void {
  res.writeHead(204, {
    'access-control-allow-methods': 'POST',
    'access-control-allow-headers': 'authorization, content-type, x-requested-with',
    'access-control-max-age': '600',
  });
  res.end();
}
