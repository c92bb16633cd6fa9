/**
 * The `htu` of a DPoP proof as compared (RFC 9449 §4.3 (9)): the URI without query and fragment,
 * normalised per RFC 3986 §6.2.2 (case of scheme and host, percent-encoding case, unreserved
 * characters decoded, dot segments removed) and §6.2.3 (default port dropped, empty path as `/`),
 * which is what WHATWG URL parsing gives an `http(s)` URL.
 * @returns the normalised URI, or `undefined` when `value` is not an absolute http(s) URI.
 */
export function normaliseHtu(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '') return undefined;
  return `${url.protocol}//${url.host}${decodeUnreserved(url.pathname)}`;
}

/** RFC 3986 §2.3 unreserved characters, percent-encoded: decoded by §6.2.2.2; other escapes upper-cased (§6.2.2.1). */
function decodeUnreserved(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(char) ? char : escape.toUpperCase();
  });
}

/**
 * A path that RFC 3986 §6.2.2 normalisation (and WHATWG URL parsing) leaves as it is: only
 * unreserved characters, sub-delims, `:`, `@` and `/`, no percent-escape and no dot segment. The
 * common case, so most requests need no URL parse.
 */
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;

/** Normalised public origins (`https://api.example.com`), by configured origin; bounded, as an origin may come from a loopback request. */
const ORIGINS = new Map<string, string | undefined>();
const MAX_ORIGINS = 64;

function normalisedOrigin(origin: string): string | undefined {
  if (ORIGINS.has(origin)) return ORIGINS.get(origin);
  // `https://api.example.com/` (an origin's path is `/`) without its slash.
  const normalised = normaliseHtu(origin)?.slice(0, -1);
  if (ORIGINS.size < MAX_ORIGINS) ORIGINS.set(origin, normalised);
  return normalised;
}

/**
 * The `htu` a proof for this request must name: the public origin (of the configured resource, never
 * the `Host` header: catalogue A31, Q39) and the path the request was routed by, without its query;
 * what {@link normaliseHtu} gives for them.
 * An absolute-form request target (`GET https://api.example.com/orders`, RFC 9112 §3.2.2) names
 * its origin: it must be the public origin, and its path is the path.
 * @returns `undefined` (no proof matches) for a path with dot segments or a backslash (catalogue H7),
 *   or an absolute-form target of another origin (H25).
 */
export function expectedHtu(publicOrigin: string, path: string): string | undefined {
  const origin = normalisedOrigin(publicOrigin);
  if (origin === undefined) return undefined;
  if (ABSOLUTE_FORM.test(path)) return absoluteFormHtu(origin, path);
  const rooted = path.startsWith('/') ? path : `/${path}`;
  if (PLAIN_PATH.test(rooted) && !DOT_SEGMENT.test(rooted)) return `${origin}${rooted}`;
  // The app routed the path as sent: `/files/../orders` reached `files/*`, so normalising it to
  // `/orders` let a proof made for `/orders` serve another handler. No client sends dot segments
  // (plain or percent-encoded) or a backslash (URL parsing reads it as `/`): nothing can name them.
  if (rooted.includes('\\') || DOT_SEGMENT.test(decodeUnreserved(rooted))) return undefined;
  return normaliseHtu(`${origin}${rooted}`);
}

const ABSOLUTE_FORM = /^https?:\/\//i;

/** The `htu` of an absolute-form target: its own path under the public origin, when it names that origin. */
function absoluteFormHtu(origin: string, target: string): string | undefined {
  const pathStart = target.indexOf('/', target.indexOf('//') + 2);
  const path = pathStart === -1 ? '/' : target.slice(pathStart);
  // The caller's origin, so normalised here and not remembered (the origin cache holds configured ones).
  if (normaliseHtu(pathStart === -1 ? target : target.slice(0, pathStart))?.slice(0, -1) !== origin) return undefined;
  return expectedHtu(origin, path);
}
