import { Logger } from '@nestjs/common';
import { toClientAuthentication, type ClientAuthentication } from './exchange/client-authentication.js';
import type { ExchangedTokenStore } from './exchange/exchanged-token-store.interface.js';
import type { FetchLike, KeycardModuleOptions, KeycardZoneOptions } from './interfaces/keycard-module-options.interface.js';
import { DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS, type SupportedAlgorithm } from './keycard.constants.js';
import { isLoopbackHost } from './loopback.js';
import { type DpopOptions, normaliseDpopOptions } from './dpop/dpop-options.js';
import { MODULE_OPTION_NAMES, unknownOptionMessage, ZONE_OPTION_NAMES } from './option-names.js';
import { ProtectedResource } from './resource-server/protected-resource.js';
import type { ScopeHierarchyOption } from './decision/policy/scope-hierarchy.js';
import { compileClaimMapping, type ClaimMapping } from './resource-server/claim-mapping.js';
import { type IntrospectionOptions, normaliseIntrospectionOptions } from './introspection/introspection-options.js';

/** Logger shape the module writes to. */
export type KeycardLogger = NonNullable<KeycardModuleOptions['logger']>;

/** One trusted zone after validation (catalogue §S4–S5). */
export interface ZoneOptions {
  /** The zone's issuer, exactly as configured: the only `iss` its tokens may carry. */
  readonly issuer: string;
  readonly issuerUrl: URL;
  /** Ids of the resources this zone issues tokens for; undefined: every resource of the module. */
  readonly resourceIds?: ReadonlySet<string>;
  readonly clientAuthentication?: ClientAuthentication;
}

/** {@link KeycardModuleOptions} after validation, with defaults applied and URLs parsed once. */
export interface KeycardOptions {
  /** The first (or only) zone's issuer. */
  readonly issuer: string;
  readonly issuerUrl: URL;
  /** Every trusted zone, in configuration order; at least one, issuers distinct. */
  readonly zones: readonly ZoneOptions[];
  /** Configured resources (of every zone); empty means "derive from loopback request origins". */
  readonly resources: readonly ProtectedResource[];
  readonly scopesSupported: readonly string[];
  /** Published exactly as `scopes_supported` when set (catalogue T28). */
  readonly baselineScopes?: readonly string[];
  /** As configured; compiled (and checked) by the route rules at bootstrap. */
  readonly scopeHierarchy?: ScopeHierarchyOption;
  /** Extra origins MCP endpoints accept (serialized, RFC 6454 §6.2). */
  readonly mcpAllowedOrigins: readonly string[];
  /** Whether MCP `tools/list` answers are filtered per caller (and marked private). */
  readonly mcpToolListing: 'all' | 'permitted';
  readonly resourceName?: string;
  readonly resourceDocumentation?: string;
  readonly clockToleranceSeconds: number;
  readonly algorithms: ReadonlySet<SupportedAlgorithm>;
  readonly requireAtJwtType: boolean;
  readonly readScpClaim: boolean;
  /** Which claim names the agent and whether `jti` is required, compiled once (catalogue T31). */
  readonly claimMapping: ClaimMapping;
  readonly auditLog: boolean;
  readonly realm?: string;
  /** The first (or only) zone's credentials. */
  readonly clientAuthentication?: ClientAuthentication;
  readonly exchangeCacheSize: number;
  readonly exchangeStore?: ExchangedTokenStore;
  readonly verifiedTokenCacheSize: number;
  readonly allowInsecureHttp: boolean;
  readonly fetch: FetchLike;
  readonly rpcTokenExtractor?: KeycardModuleOptions['rpcTokenExtractor'];
  /** DPoP (RFC 9449); undefined when off (the default). */
  readonly dpop?: DpopOptions;
  /** RFC 7662 introspection: the answer cache, and whether opaque tokens are introspected. */
  readonly introspection: IntrospectionOptions;
  readonly logger: KeycardLogger;
  /** What a failed zone check at boot does: log it (the app serves, 503 until fixed) or fail the bootstrap. */
  readonly zoneCheck: 'log' | 'fail';
}

const MAX_CLOCK_TOLERANCE_SECONDS = 300;
/** RFC 6749 §3.3 scope-token: printable ASCII without space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
/** Values written inside a quoted challenge parameter (RFC 6750 §3). */
const QUOTABLE = /^[\x20\x21\x23-\x5B\x5D-\x7E]*$/;

function fail(option: string, problem: string): never {
  throw new TypeError(`KeycardModule: '${option}' ${problem}`);
}

function parseUrl(option: string, value: unknown): URL {
  if (typeof value !== 'string' || value.length === 0) fail(option, 'must be a non-empty URL string');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    fail(option, `is not an absolute URL: ${JSON.stringify(value)}`);
  }
  if (!QUOTABLE.test(value)) fail(option, 'must be printable ASCII without quotes or backslashes');
  if (url.username || url.password) fail(option, 'must not contain credentials');
  if (url.hash || value.includes('#')) fail(option, 'must not contain a fragment');
  return url;
}

/** Fails on the first key of `raw` that is not in `known`, with a did-you-mean (see {@link unknownOptionMessage}). */
function rejectUnknownKeys(prefix: string, raw: object, known: readonly string[]): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) fail(`${prefix}${key}`, unknownOptionMessage(key, known));
  }
}

function requireSecureScheme(option: string, url: URL, allowInsecureHttp: boolean): void {
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && (isLoopbackHost(url.hostname) || allowInsecureHttp)) return;
  fail(option, `must use https (http only for loopback hosts or with 'allowInsecureHttp'): ${url.href}`);
}

function optionalBoolean(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(option, 'must be a boolean');
  return value;
}

/** One of `choices`, or `undefined` when not given. */
function oneOf<T extends string>(option: string, value: unknown, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!choices.includes(value as T)) fail(option, `must be one of ${choices.map((c) => `'${c}'`).join(', ')}`);
  return value as T;
}

function optionalString(option: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) fail(option, 'must be a non-empty string');
  return value;
}

function normaliseZoneUrl(option: string, value: unknown, allowInsecureHttp: boolean): URL {
  const url = parseUrl(option, value);
  if (url.search || (value as string).includes('?')) fail(option, 'must not contain a query');
  requireSecureScheme(option, url, allowInsecureHttp);
  return url;
}

/**
 * `zoneUrl` (one zone) or `zones` (several): each zone with its issuer, its resources (its own, else
 * the module's `resource`) and its exchange credentials (its own, else the module's).
 */
function normaliseZones(
  raw: KeycardModuleOptions,
  allowInsecureHttp: boolean,
): { zones: ZoneOptions[]; resources: ProtectedResource[] } {
  const shared = normaliseResources('resource', raw.resource, allowInsecureHttp);
  const sharedAuth = clientAuthenticationOf('clientCredentials', raw.clientCredentials);
  if (raw.zones === undefined) {
    const issuerUrl = normaliseZoneUrl('zoneUrl', raw.zoneUrl, allowInsecureHttp);
    return { zones: [{ issuer: raw.zoneUrl!, issuerUrl, clientAuthentication: sharedAuth }], resources: shared };
  }
  if (raw.zoneUrl !== undefined) fail('zones', "cannot be combined with 'zoneUrl' (list every zone in 'zones')");
  if (!Array.isArray(raw.zones) || raw.zones.length === 0) fail('zones', 'must list at least one zone');
  const resources = new Map(shared.map((r) => [r.id, r]));
  const zones = raw.zones.map((entry: string | KeycardZoneOptions, index): ZoneOptions => {
    const option = `zones[${index}]`;
    const zone = typeof entry === 'string' ? { zoneUrl: entry } : entry;
    if (typeof zone !== 'object' || zone === null) fail(option, 'must be a zone URL string or { zoneUrl, resource?, clientCredentials? }');
    rejectUnknownKeys(`${option}.`, zone, ZONE_OPTION_NAMES);
    const issuerUrl = normaliseZoneUrl(`${option}.zoneUrl`, zone.zoneUrl, allowInsecureHttp);
    const own = zone.resource === undefined ? undefined : normaliseResources(`${option}.resource`, zone.resource, allowInsecureHttp);
    for (const resource of own ?? []) if (!resources.has(resource.id)) resources.set(resource.id, resource);
    const served = own ?? (shared.length > 0 ? shared : undefined);
    const auth = zone.clientCredentials === undefined ? sharedAuth : clientAuthenticationOf(`${option}.clientCredentials`, zone.clientCredentials);
    return { issuer: zone.zoneUrl, issuerUrl, resourceIds: served && new Set(served.map((r) => r.id)), clientAuthentication: auth };
  });
  const issuers = new Set<string>();
  for (const { issuer } of zones) {
    if (issuers.has(issuer)) fail('zones', `lists ${issuer} twice`);
    issuers.add(issuer);
  }
  if (resources.size > 0 && zones.some((z) => z.resourceIds === undefined) && shared.length === 0) {
    fail('zones', "mixes zones with and without 'resource': give every zone its resources, or set the module's 'resource'");
  }
  return { zones, resources: [...resources.values()] };
}

function normaliseResources(name: string, raw: unknown, allowInsecureHttp: boolean): ProtectedResource[] {
  if (raw === undefined) return [];
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) fail(name, 'must name at least one resource identifier');
  return list.map((value, index) => {
    const option = Array.isArray(raw) ? `${name}[${index}]` : name;
    const url = parseUrl(option, value);
    requireSecureScheme(option, url, allowInsecureHttp);
    // Its metadata document lives at the well-known path + this path, one route parameter a segment.
    if (url.pathname.includes('//')) fail(option, 'must not contain empty path segments');
    return new ProtectedResource(value as string);
  });
}

function normaliseScopes(raw: unknown, option = 'scopesSupported'): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) fail(option, 'must be an array of scope strings');
  for (const scope of raw) {
    if (typeof scope !== 'string' || !SCOPE_TOKEN.test(scope)) {
      fail(option, `contains an invalid scope: ${JSON.stringify(scope)}`);
    }
    // Q29: a request for a refresh token, not a permission of this API; never published.
    if (scope === 'offline_access') fail(option, 'contains offline_access, which must not be published');
  }
  return [...new Set(raw as string[])];
}

/** `http(s)` origins, serialized (`https://a.example:443` → `https://a.example`). */
function normaliseOrigins(option: string, raw: unknown): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) fail(option, 'must be an array of origins');
  return raw.map((value: unknown) => {
    const url = parseUrl(option, value);
    const originOnly = url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !originOnly) {
      fail(option, `must list origins (scheme, host, port) only: ${JSON.stringify(value)}`);
    }
    return url.origin;
  });
}

function normaliseAlgorithms(raw: unknown): Set<SupportedAlgorithm> {
  if (raw === undefined) return new Set(DEFAULT_ALGORITHMS);
  if (!Array.isArray(raw) || raw.length === 0) fail('algorithms', 'must be a non-empty array');
  for (const alg of raw) {
    if (!(SUPPORTED_ALGORITHMS as readonly unknown[]).includes(alg)) {
      fail(
        'algorithms',
        `contains ${JSON.stringify(alg)}; only asymmetric algorithms are accepted (${SUPPORTED_ALGORITHMS.join(', ')}), never none or HS*`,
      );
    }
  }
  return new Set(raw as SupportedAlgorithm[]);
}

function normaliseClockTolerance(raw: unknown): number {
  if (raw === undefined) return 30;
  if (typeof raw !== 'number' || !Number.isFinite(raw) || raw < 0 || raw > MAX_CLOCK_TOLERANCE_SECONDS) {
    fail('clockToleranceSeconds', `must be a number of seconds from 0 to ${MAX_CLOCK_TOLERANCE_SECONDS}`);
  }
  return raw;
}

function clientAuthenticationOf(option: string, raw: unknown): ClientAuthentication | undefined {
  try {
    return toClientAuthentication(raw);
  } catch (error) {
    fail(option, (error as Error).message.replace(/^KeycardModule: 'clientCredentials' /, ''));
  }
}

/**
 * The most entries a cache may be sized for: a JavaScript `Map` or `Set` holds at most 2^24, and
 * past that every insertion throws, so a larger cache would refuse every new token once it filled.
 */
const MAX_CACHE_SIZE = 2 ** 24;

function normaliseCacheSize(option: string, raw: unknown, fallback: number): number {
  if (raw === undefined) return fallback;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > MAX_CACHE_SIZE) {
    fail(option, `must be a whole number from 0 to ${MAX_CACHE_SIZE}`);
  }
  return raw;
}

function normaliseExchangeStore(raw: unknown): ExchangedTokenStore | undefined {
  if (raw === undefined) return undefined;
  const store = raw as Partial<ExchangedTokenStore> | null;
  if (typeof store !== 'object' || store === null || typeof store.get !== 'function' || typeof store.set !== 'function') {
    fail('exchangeStore', 'must have get and set methods');
  }
  return store as ExchangedTokenStore;
}

function normaliseZoneCheck(raw: unknown): 'log' | 'fail' {
  if (raw === undefined) return 'log';
  if (raw !== 'log' && raw !== 'fail') fail('zoneCheck', "must be 'log' or 'fail'");
  return raw;
}

function normaliseLogger(raw: unknown): KeycardLogger {
  if (raw === undefined) return new Logger('Keycard');
  const logger = raw as Partial<KeycardLogger>;
  if (
    typeof logger !== 'object' ||
    typeof logger.log !== 'function' ||
    typeof logger.warn !== 'function' ||
    typeof logger.error !== 'function'
  ) {
    fail('logger', 'must have log, warn and error methods');
  }
  return logger as KeycardLogger;
}

/**
 * `opaqueTokens: 'introspect'`: an opaque token names no issuer, so the route's resource must name
 * the one zone to ask (asking several would hand the token to another tenant's server), and that
 * zone needs credentials (RFC 7662 §2.1: the endpoint requires client authentication).
 */
function checkOpaqueTokenZones(zones: readonly ZoneOptions[], resources: readonly ProtectedResource[]): void {
  for (const zone of zones) {
    if (zone.clientAuthentication === undefined) fail('opaqueTokens', `needs 'clientCredentials' for the zone ${zone.issuer} (RFC 7662 §2.1)`);
  }
  if (zones.length === 1) return;
  for (const resource of resources) {
    const serving = zones.filter((zone) => zone.resourceIds === undefined || zone.resourceIds.has(resource.id));
    if (serving.length > 1) fail('opaqueTokens', `needs exactly one zone per resource: ${resource.id} is served by ${serving.length}`);
  }
}

/**
 * Validates `forRoot` input and applies defaults. Throws a `TypeError` naming the option, which
 * fails the application bootstrap: a misconfigured guard must never start serving.
 */
export function normaliseOptions(input: string | KeycardModuleOptions): KeycardOptions {
  const raw: KeycardModuleOptions =
    typeof input === 'string' ? { zoneUrl: input } : (input ?? ({} as KeycardModuleOptions));
  if (typeof raw !== 'object') fail('options', 'must be a zone URL string or an options object');
  rejectUnknownKeys('', raw, MODULE_OPTION_NAMES);
  const allowInsecureHttp = optionalBoolean('allowInsecureHttp', raw.allowInsecureHttp, false);
  const { zones, resources } = normaliseZones(raw, allowInsecureHttp);
  const realm = optionalString('realm', raw.realm);
  if (realm !== undefined && !QUOTABLE.test(realm)) fail('realm', 'must be printable ASCII without quotes');
  const resourceDocumentation = optionalString('resourceDocumentation', raw.resourceDocumentation);
  if (resourceDocumentation !== undefined) parseUrl('resourceDocumentation', resourceDocumentation);
  if (raw.fetch !== undefined && typeof raw.fetch !== 'function') fail('fetch', 'must be a function');
  if (raw.rpcTokenExtractor !== undefined && typeof raw.rpcTokenExtractor !== 'function') {
    fail('rpcTokenExtractor', 'must be a function');
  }
  const introspection = normaliseIntrospectionOptions(raw.introspection, raw.opaqueTokens);
  if (introspection.opaqueTokens) checkOpaqueTokenZones(zones, resources);
  return {
    issuer: zones[0].issuer,
    issuerUrl: zones[0].issuerUrl,
    zones,
    resources,
    scopesSupported: normaliseScopes(raw.scopesSupported),
    baselineScopes: raw.baselineScopes === undefined ? undefined : normaliseScopes(raw.baselineScopes, 'baselineScopes'),
    scopeHierarchy: raw.scopeHierarchy,
    mcpAllowedOrigins: normaliseOrigins('mcpAllowedOrigins', raw.mcpAllowedOrigins),
    mcpToolListing: oneOf('mcpToolListing', raw.mcpToolListing, ['all', 'permitted'] as const) ?? 'all',
    resourceName: optionalString('resourceName', raw.resourceName),
    resourceDocumentation,
    clockToleranceSeconds: normaliseClockTolerance(raw.clockToleranceSeconds),
    algorithms: normaliseAlgorithms(raw.algorithms),
    requireAtJwtType: optionalBoolean('requireAtJwtType', raw.requireAtJwtType, false),
    readScpClaim: optionalBoolean('readScpClaim', raw.readScpClaim, false),
    claimMapping: compileClaimMapping(raw.claimMapping),
    auditLog: optionalBoolean('auditLog', raw.auditLog, false),
    realm,
    clientAuthentication: zones[0].clientAuthentication,
    exchangeCacheSize: normaliseCacheSize('exchangeCacheSize', raw.exchangeCacheSize, 1000),
    exchangeStore: normaliseExchangeStore(raw.exchangeStore),
    verifiedTokenCacheSize: normaliseCacheSize('verifiedTokenCacheSize', raw.verifiedTokenCacheSize, 10_000),
    allowInsecureHttp,
    fetch: raw.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    rpcTokenExtractor: raw.rpcTokenExtractor,
    dpop: normaliseDpopOptions(raw.dpop),
    introspection,
    logger: normaliseLogger(raw.logger),
    zoneCheck: normaliseZoneCheck(raw.zoneCheck),
  };
}
