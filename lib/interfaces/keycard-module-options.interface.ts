import type { ScopeHierarchyOption } from '../decision/policy/scope-hierarchy.js';
import type { ExecutionContext, LoggerService } from '@nestjs/common';
import type { ClientAuthentication } from '../exchange/client-authentication.js';
import type { ExchangedTokenStore } from '../exchange/exchanged-token-store.interface.js';
import type { SupportedAlgorithm } from '../keycard.constants.js';
import type { DpopModuleOptions } from '../dpop/dpop-options.js';
import type { ClaimMappingOption } from '../resource-server/claim-mapping.js';

/** A `fetch`-compatible function, e.g. one that goes through a corporate proxy. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/**
 * One of several trusted zones (`zones` option), e.g. one per customer of a multi-tenant API.
 * @publicApi
 */
export interface KeycardZoneOptions {
  /** The zone's issuer URL, with the same rules as {@link KeycardModuleOptions.zoneUrl}. */
  zoneUrl: string;
  /** The resources this zone issues tokens for. @default the module's `resource` */
  resource?: string | string[];
  /** This service's credentials at this zone, for `TokenExchangeService`. @default the module's `clientCredentials` */
  clientCredentials?: KeycardModuleOptions['clientCredentials'];
}

/**
 * Options of `KeycardModule.forRoot()`. `forRoot('https://zone.keycard.cloud')` is short for
 * `forRoot({ zoneUrl: 'https://zone.keycard.cloud' })`. Give either `zoneUrl` or `zones`.
 * @publicApi
 */
export interface KeycardModuleOptions {
  /**
   * The zone (authorization server) issuer URL, e.g. `https://abc123.keycard.cloud`. Must be
   * `https` (plain `http` only for loopback hosts or with {@link allowInsecureHttp}), without
   * query, fragment or credentials. Compared code point for code point with the metadata's `issuer`
   * and the tokens' `iss`: a trailing slash matters.
   */
  zoneUrl?: string;
  /**
   * Several trusted zones instead of one `zoneUrl`: a token's `iss` picks its zone from this list
   * (exact match, before any network call), and only that zone's keys verify it. Each zone has its
   * own metadata, keys and refresh cool-downs, and may have its own `resource` and
   * `clientCredentials`. The protected resource metadata lists every zone serving the resource.
   */
  zones?: (string | KeycardZoneOptions)[];
  /**
   * The identifier(s) of this API: the `aud` a token must carry and the `resource` of the protected
   * resource metadata. When several are given, a request is matched to the one whose path is the
   * longest prefix of the request path (else the first).
   * A path is the path clients call, global prefix and URI version included
   * (`https://api.example.com/api/v1/orders`); its metadata document is served at the origin root
   * plus the path (`/.well-known/oauth-protected-resource/api/v1/orders`, RFC 9728 §3.1).
   * @default derived from the request origin in local development only: the connection reached a
   * loopback address and `Host` names a loopback host with a port of 1–65535. Any other request
   * answers 500 until it is configured (400 when `Host` cannot be parsed).
   */
  resource?: string | string[];
  /**
   * More origins whose browsers may call this API's MCP endpoints, beside the origins of `resource`
   * (and loopback origins in development mode). A request to an MCP endpoint whose `Origin` is
   * present and not one of them is answered 403 with a JSON-RPC error, before its token is read
   * (MCP 2026-07-28 transports, §Security). Each an absolute `http(s)` origin (`https://app.example.com`).
   * @default []
   */
  mcpAllowedOrigins?: string[];
  /**
   * `permitted`: a `tools/list` answer of an MCP endpoint names only the tools the caller's token
   * may call (their `@RequireScopes()` or `@McpEndpoint({ tools })` scopes, through the scope
   * hierarchy; a tool the module knows no requirement of stays listed), and is marked
   * `cacheScope: "private"` with a `ttlMs` ≥ 0 (MCP 2026-07-28 caching, §Cache Scope Field): an
   * app's `public` on such a list is replaced, with one warning log line. The listing is a courtesy,
   * never access control: every call is still judged in full. `all`: lists are left as the MCP
   * server builds them.
   * @default 'all'
   */
  mcpToolListing?: 'all' | 'permitted';
  /**
   * Extra scopes to publish in `scopes_supported`, besides those named in `@RequireScopes()`.
   * `offline_access` fails the bootstrap (catalogue Q29).
   */
  scopesSupported?: string[];
  /**
   * Publish exactly these scopes as `scopes_supported`, instead of every declared scope: the minimal
   * set a client needs for basic use (MCP authorization, Scope Selection Strategy; catalogue T28).
   * Challenges still name whatever a call needs. Recommended for MCP servers.
   * @default undefined (every declared static scope, plus `scopesSupported`)
   */
  baselineScopes?: string[];
  /**
   * Scope hierarchy (catalogue Q24): each key is a broader scope, its list the scopes it implies, by
   * name or by `{ prefix }` (the prefix must end in `:`, `/` or `.`). Closed transitively at
   * bootstrap; a cycle, a wildcard (`*`), an empty prefix or `offline_access` fails it. A token's
   * own scope strings never expand, and challenges keep naming the declared scopes.
   * @example `{ 'orders:write': ['orders:read'], 'orders:admin': ['orders:write', { prefix: 'orders:' }] }`
   * @default none: a scope is satisfied only by itself
   */
  scopeHierarchy?: ScopeHierarchyOption;
  /** Human-readable name of this API, published as `resource_name`. */
  resourceName?: string;
  /** URL of this API's documentation, published as `resource_documentation`. */
  resourceDocumentation?: string;
  /**
   * Leeway for `exp`, `nbf` and `iat`, in seconds, to absorb clock skew between zone and API.
   * @default 30 (at most 300)
   */
  clockToleranceSeconds?: number;
  /**
   * JWS algorithms accepted. Asymmetric only: `none` and `HS*` fail the bootstrap.
   * @default ['RS256', 'PS256', 'ES256']
   */
  algorithms?: SupportedAlgorithm[];
  /**
   * When true, only tokens typed `at+jwt` / `application/at+jwt` (RFC 9068) are accepted. When false,
   * `JWT` and an absent `typ` are accepted too, because some zones do not type their access tokens.
   * @default false
   */
  requireAtJwtType?: boolean;
  /**
   * Also read scopes from an `scp` claim when `scope` is absent (Azure-style). Off by default: a
   * token's scopes come from `scope` only.
   * @default false
   */
  readScpClaim?: boolean;
  /**
   * For zones whose access tokens are JWTs but not RFC 9068 profiles: which claim names the agent
   * (`agent`: `azp` for Keycloak, Auth0's default profile and Entra ID v2, `appid` for Entra ID v1,
   * `cid` for Okta) and whether `jti` is required (`requireJti: false` for Auth0's default profile
   * and Entra ID). Checked at bootstrap; see `docs/resource-server.md` for each server's setting.
   * @example `claimMapping: { agent: 'azp' }`
   * @default RFC 9068: `{ agent: 'client_id', requireJti: true }` (a token without them is `invalid_token`)
   */
  claimMapping?: ClaimMappingOption;
  /**
   * Log one structured line per HTTP request (agent, user, session, scopes, method, route pattern,
   * status, duration, and the reason of a denial, 401/403/429 included) through {@link logger}.
   * Never the token.
   * @default false
   */
  auditLog?: boolean;
  /** `realm` of the `WWW-Authenticate` challenges. @default omitted */
  realm?: string;
  /**
   * Credentials of this service at the zone, for `TokenExchangeService`: `{ clientId, clientSecret }`
   * or a `ClientSecret` / `PrivateKeyJwt` / `WorkloadIdentity` instance.
   * @default none (the exchange service is not usable)
   */
  clientCredentials?: { clientId: string; clientSecret: string } | ClientAuthentication;
  /**
   * How many exchanged tokens `TokenExchangeService` keeps (least recently used evicted first).
   * `0` turns the cache off; at most 16 777 216 (2^24, what a JavaScript `Map` holds).
   * @default 1000
   */
  exchangeCacheSize?: number;
  /**
   * A cache of exchanged tokens shared with the other instances of this service, consulted after the
   * in-process one, e.g. `new RedisExchangedTokenStore(…)` from `nestjs-keycard/redis` (encrypted at
   * rest, hashed keys). A store that fails or takes over 250 ms is skipped, never failing an exchange.
   * @default none (each instance exchanges for itself)
   */
  exchangeStore?: ExchangedTokenStore;
  /**
   * How many verified tokens the guard remembers, so a repeated token skips the signature check
   * (about 1–2 KB each). A token is remembered from its second verification on: one sent once (a
   * per-action token) is never kept, and only a 30-bit fingerprint of it is (as many as this size).
   * An entry is dropped when the token expires or the zone's keys change. `0` turns the cache off;
   * at most 16 777 216 (2^24, what a JavaScript `Map` or `Set` holds).
   * @default 10000
   */
  verifiedTokenCacheSize?: number;
  /**
   * Allow `http` zone URLs on non-loopback hosts. Tokens and keys then travel in clear text: only for
   * closed test networks.
   * @default false (loopback zones are always allowed over http)
   */
  allowInsecureHttp?: boolean;
  /**
   * Where the token of a microservice call travels when its transport has no metadata (TCP, Redis,
   * NATS…). gRPC calls read the `authorization` metadata and need none. Without it such calls are
   * refused (catalogue N7). Return `undefined` when the call carries no token.
   * @example `rpcTokenExtractor: (context) => context.switchToRpc().getData()?.accessToken`
   * @default undefined
   */
  rpcTokenExtractor?: (context: ExecutionContext) => string | undefined;
  /**
   * DPoP (RFC 9449), sender-constrained tokens: `'allowed'` accepts both `Bearer` and `DPoP`
   * schemes, `'required'` only `DPoP`; an object sets the proof algorithms, the `iat` window, a
   * shared replay store and server nonces (see `docs/dpop.md`). Off by default: a token bound to a
   * key (`cnf`) is then refused and the `DPoP` scheme is an unknown one.
   */
  dpop?: 'allowed' | 'required' | DpopModuleOptions;
  /**
   * RFC 7662 token introspection at each zone's `introspection_endpoint` (from its RFC 8414
   * metadata), with the zone's `clientCredentials`: for routes that declare `@RequireFreshness()`
   * and, with {@link opaqueTokens}, for tokens that are not JWTs. See `docs/introspection.md`.
   * @default { maxAgeSeconds: 0 } (every such call asks the zone)
   */
  introspection?: IntrospectionModuleOptions;
  /**
   * What a bearer token that is not a JWT (no two dots) gets: `'reject'` answers 401 `invalid_token`
   * without any network call; `'introspect'` asks the zone that serves the route's resource
   * (RFC 7662) and builds the agent from its answer, which must name this resource (`aud`) and the
   * zone (`iss`). Needs `clientCredentials`, and exactly one zone per resource.
   * @default 'reject'
   */
  opaqueTokens?: 'reject' | 'introspect';
  /** `fetch` used for every call to the zone (metadata, keys, token endpoint). @default globalThis.fetch */
  fetch?: FetchLike;
  /**
   * Where the module logs denials, zone outages and configuration problems. Never receives a token,
   * secret or assertion.
   * @default Nest's `Logger` with context `Keycard`
   */
  logger?: Pick<LoggerService, 'log' | 'warn' | 'error'> & Partial<Pick<LoggerService, 'debug'>>;
  /**
   * The zone is checked once at boot: its metadata answers, its `issuer` equals the zone URL, its
   * keys include one usable with `algorithms`, and it publishes the declared scopes. `'log'` logs
   * what is wrong (naming what was expected and what was found) and lets the app start; requests
   * then answer 503 until the zone is right. `'fail'` waits for the check (up to the 5 s fetch
   * deadline per document) and fails the bootstrap with that message instead.
   * @default 'log'
   */
  zoneCheck?: 'log' | 'fail';
}

/**
 * The `introspection` option of `KeycardModule.forRoot()` (RFC 7662, catalogue X29–X35, Q36).
 * @publicApi
 */
export interface IntrospectionModuleOptions {
  /**
   * How long an `active` answer may be reused for the same token at the same zone, in seconds;
   * never past the answer's `exp` (an answer without `exp` is never reused). Each reuse is judged
   * again against the call (audience, issuer, expiry; the route's scopes run as on every call).
   * `0` asks the zone on every call (RFC 7662 §4: caching trades load against freshness). 0–3600.
   * @default 0
   */
  maxAgeSeconds?: number;
  /** Most answers kept (least recently used dropped first). @default 10000 */
  cacheSize?: number;
}
