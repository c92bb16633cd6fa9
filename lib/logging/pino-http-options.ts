/** What a redacted value is replaced with. */
export const REDACTED = '[Redacted]';

/** Request headers that carry a credential whatever their value looks like. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization', 'cookie', 'dpop', 'x-api-key']);
/** Query and route parameters that carry a credential (RFC 6750 §2.3, RFC 6749, RFC 8693, RFC 7636). */
const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set([
  'access_token', 'refresh_token', 'id_token', 'token', 'client_secret', 'client_assertion', 'subject_token',
  'actor_token', 'code_verifier',
]);
/**
 * A value that is a credential wherever it appears: an HTTP authentication scheme followed by
 * credentials (RFC 9110 §11.4; proxies copy `Authorization` into headers of their own), or a JOSE
 * header (`eyJ…` + `.`: any JWS/JWE, so any Keycard token). The JOSE part only starts after a
 * non-base64url character, which keeps the scan linear on hostile input.
 */
const CREDENTIAL_VALUE = /^\s*(?:bearer|dpop|basic|digest|negotiate|token)\s|(?:^|[^\w-])eyJ[\w-]*\./i;
/** `name=value` pairs of a query string. */
const QUERY_PAIR = /([?&])([^=&#]*)=([^&#]*)/g;

/** The part of pino-http's options this helper reads; everything else passes through untouched. */
export interface PinoHttpOptionsLike {
  /** Every other pino-http option (`level`, `customProps`, `autoLogging`, …) passes through unchanged. */
  [option: string]: unknown;
  serializers?: Record<string, (value: never) => unknown>;
  customAttributeKeys?: { req?: string };
  wrapSerializers?: boolean;
}

/**
 * pino-http options (also nestjs-pino's `pinoHttp`) whose request serializer never writes a
 * credential: `Authorization`, `Proxy-Authorization`, `Cookie`, `DPoP` and `X-Api-Key` headers,
 * any header, query or route parameter value that is a bearer-style credential or a JWS/JWE, and
 * credential query parameters (`access_token`, `client_secret`, …) become `"[Redacted]"`.
 *
 * It has to be the logger's configuration: pino-http serializes `req` (headers included) into the
 * request's child logger when the request starts, in middleware that runs before any guard, and
 * every later line of that request — nestjs-pino's `Logger` included — reuses those bindings.
 *
 * Your own `serializers.req` (or the key renamed by `customAttributeKeys.req`) still runs, and its
 * output is redacted. Needs pino-http's default `wrapSerializers: true`.
 *
 * @example
 * ```ts
 * LoggerModule.forRoot({ pinoHttp: keycardPinoHttpOptions({ level: 'info' }) })
 * ```
 * @throws TypeError with `wrapSerializers: false` (the serializer would receive the raw request).
 * @publicApi
 */
export function keycardPinoHttpOptions<O extends PinoHttpOptionsLike>(
  options: O = {} as O,
): Omit<O, 'serializers'> & { serializers: Record<string, (value: unknown) => unknown> } {
  if (options.wrapSerializers === false) {
    throw new TypeError("keycardPinoHttpOptions: 'wrapSerializers: false' is not supported; leave it at its default (true)");
  }
  const key = options.customAttributeKeys?.req ?? 'req';
  const own = (options.serializers?.[key] ?? options.serializers?.req) as ((req: unknown) => unknown) | undefined;
  const req = (serialized: unknown): unknown => redactRequest(own ? own(serialized) : serialized);
  // Your other serializers keep their own parameter types: pino calls each with its own key's value.
  const serializers = { ...options.serializers, [key]: req } as Record<string, (value: unknown) => unknown>;
  return { ...options, serializers };
}

/**
 * A serialized request (pino-std-serializers' shape: `headers`, `url`, `query`, `params`) with every
 * credential replaced by {@link REDACTED}; the same object when there was none.
 */
export function redactRequest(serialized: unknown): unknown {
  if (typeof serialized !== 'object' || serialized === null) return serialized;
  const req = serialized as { headers?: unknown; url?: unknown; query?: unknown; params?: unknown };
  const headers = redactRecord(req.headers, CREDENTIAL_HEADERS);
  const query = redactRecord(req.query, CREDENTIAL_PARAMS);
  const params = redactRecord(req.params, CREDENTIAL_PARAMS);
  const url = typeof req.url === 'string' ? redactUrl(req.url) : req.url;
  if (headers === req.headers && query === req.query && params === req.params && url === req.url) return serialized;
  return { ...serialized, headers, url, query, params };
}

function isCredential(value: unknown): boolean {
  if (typeof value === 'string') return CREDENTIAL_VALUE.test(value);
  return Array.isArray(value) && value.some(isCredential);
}

/**
 * A copy of `record` with credential entries redacted, or `record` itself when it has none. Nested
 * objects (an extended query parser's `?filter[access_token]=…`) are searched the same way.
 */
function redactRecord(record: unknown, names: ReadonlySet<string>, depth = 0): unknown {
  if (typeof record !== 'object' || record === null) return record;
  let copy: Record<string, unknown> | undefined;
  for (const [name, value] of Object.entries(record)) {
    let replacement: unknown = value;
    if (value === undefined) continue;
    if (names.has(name.toLowerCase()) || isCredential(value)) replacement = REDACTED;
    else if (typeof value === 'object' && value !== null) {
      // Deeper than any query parser nests (qs stops at 5): redacted whole rather than searched.
      replacement = depth >= 8 ? REDACTED : redactRecord(value, names, depth + 1);
    }
    if (replacement === value) continue;
    copy ??= Array.isArray(record) ? [...record] as unknown as Record<string, unknown> : { ...record };
    copy[name] = replacement;
  }
  return copy ?? record;
}

/**
 * The URL with credential query parameters (also under a bracketed name, `filter[access_token]`)
 * and credential path segments (a route parameter's copy, `/tokens/eyJ…`) redacted.
 */
function redactUrl(url: string): string {
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const redactedPath = path.includes('eyJ') || path.includes('%') ? path.split('/').map((segment) => (isCredential(decodeQuery(segment)) ? REDACTED : segment)).join('/') : path;
  if (queryAt === -1) return redactedPath;
  const query = url.slice(queryAt).replace(QUERY_PAIR, (pair, separator: string, name: string, value: string) => {
    const credential = isCredentialName(decodeQuery(name)) || isCredential(decodeQuery(value));
    return credential ? `${separator}${name}=${REDACTED}` : pair;
  });
  return redactedPath + query;
}

/** `access_token`, or a bracketed form an extended query parser nests (`a[access_token]`, `access_token[]`). */
function isCredentialName(name: string): boolean {
  return name.toLowerCase().split(/[[\]]+/).some((part) => CREDENTIAL_PARAMS.has(part));
}

function decodeQuery(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text; // a malformed escape is judged as written
  }
}
