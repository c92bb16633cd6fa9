/** DI token of the normalised {@link KeycardOptions}. */
export const KEYCARD_OPTIONS = 'KEYCARD:MODULE_OPTIONS';
/** DI token of the raw options given to `forRoot` / `forRootAsync`, before validation. */
export const KEYCARD_RAW_OPTIONS = 'KEYCARD:RAW_OPTIONS';
/**
 * DI token of options merged over the app's own (`forRoot` / `forRootAsync`), `null` unless a test
 * overrides it: `Test.createTestingModule({ imports: [AppModule] })
 * .overrideProvider(KEYCARD_OPTIONS_OVERRIDE).useValue(zone.moduleOptions())` points an app at a
 * `TestZone` without touching its configuration code. The merged options are validated as usual.
 */
export const KEYCARD_OPTIONS_OVERRIDE = 'KEYCARD:OPTIONS_OVERRIDE';
/** DI token of the clock (milliseconds since the epoch); tests override it to freeze time. */
export const KEYCARD_CLOCK = 'KEYCARD:CLOCK';
/** Metadata key of `@RequireScopes()`. */
export const KEYCARD_SCOPES = 'KEYCARD:SCOPES';
/** Metadata key of `@Public()`. */
export const KEYCARD_PUBLIC = 'KEYCARD:PUBLIC';

/** Sent on every outbound request, so zone operators can tell who is calling. */
export const USER_AGENT = 'nestjs-keycard/0.1 (+https://www.npmjs.com/package/nestjs-keycard)';

/** Tokens longer than this are refused before any parsing (catalogue A29). */
export const MAX_TOKEN_LENGTH = 8192;
/** Absolute deadline of a metadata or JWKS fetch, in milliseconds (catalogue E4/E5). */
export const FETCH_TIMEOUT_MS = 5_000;
/** Largest metadata or JWKS body read, in bytes (catalogue E11). */
export const MAX_BODY_BYTES = 1024 * 1024;
/** How long fetched zone metadata and keys are used before a refresh, in milliseconds (catalogue E20). */
export const CACHE_MAX_AGE_MS = 10 * 60_000;
/**
 * How long past {@link CACHE_MAX_AGE_MS} the last good metadata/keys stay usable while the zone is
 * unreachable (catalogue E23, F10). Bounded because stale keys stay trusted during a rotation.
 */
export const STALE_IF_ERROR_MS = 60 * 60_000;
/** At most one JWKS refetch for an unknown `kid` per this many milliseconds (catalogue E21/E22). */
export const JWKS_COOLDOWN_MS = 30_000;
/** Back-off between metadata retries while the zone is down: first and largest delay, in ms (F1). */
export const RETRY_MIN_MS = 1_000;
export const RETRY_MAX_MS = 30_000;
/**
 * While the zone is down, a request may start a metadata attempt at most this often (single flight),
 * whatever the back-off: a zone that comes back is used within this bound, and a flood of requests
 * costs the zone at most one attempt per interval (catalogue U16).
 */
export const RETRY_ON_DEMAND_FLOOR_MS = 500;
/** Smallest RSA modulus accepted, in bits (RFC 7518 §3.3, catalogue E14). */
export const MIN_RSA_BITS = 2048;
/** `Cache-Control: max-age` of the protected resource metadata document, in seconds (G6). */
export const PRM_MAX_AGE_SECONDS = 3600;

export const PRM_WELL_KNOWN = '/.well-known/oauth-protected-resource';
export const AS_WELL_KNOWN = '/.well-known/oauth-authorization-server';
export const OIDC_WELL_KNOWN = '/.well-known/openid-configuration';

/** Algorithms accepted when none are configured. */
export const DEFAULT_ALGORITHMS = ['RS256', 'PS256', 'ES256'] as const;
/**
 * Every asymmetric JWS algorithm the verifier can check with `crypto.verify` (RFC 7518 §3.3–3.5:
 * RSASSA-PKCS1-v1_5, RSASSA-PSS, ECDSA); anything else is refused at bootstrap.
 */
export const SUPPORTED_ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512',
] as const;
export type SupportedAlgorithm = (typeof SUPPORTED_ALGORITHMS)[number];

/** Metadata key of `@Grant()`: the upstream resources a handler needs, with scopes. */
export const KEYCARD_GRANT = 'KEYCARD:GRANT';

/** Metadata key of `@McpEndpoint()`. */
export const KEYCARD_MCP_ENDPOINT = 'KEYCARD:MCP_ENDPOINT';
