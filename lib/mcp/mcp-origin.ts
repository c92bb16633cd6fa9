import { isLoopbackHost } from '../loopback.js';

/**
 * Which `Origin` an MCP endpoint accepts (MCP 2026-07-28 transports, §Security: "If the `Origin`
 * header is present and invalid, servers MUST respond with HTTP 403"; catalogue Q30). Valid: the
 * origins of the configured resources, the app's `mcpAllowedOrigins`, and, in development mode (no
 * resource configured), loopback origins. Compared as RFC 6454 §6.2 ASCII serializations, so
 * `https://api.example.com:443` is `https://api.example.com`; `null` and anything unparseable are invalid.
 */
export class McpOriginPolicy {
  private readonly allowed: ReadonlySet<string>;
  private readonly development: boolean;

  /**
   * @param resources the configured resource URLs; none means development mode.
   * @param extra more allowed origins (`mcpAllowedOrigins`), already validated.
   */
  constructor(resources: readonly string[], extra: readonly string[]) {
    this.allowed = new Set([...resources, ...extra].map((url) => new URL(url).origin));
    this.development = resources.length === 0;
  }

  /** Whether a request with this `Origin` header value (`undefined`: none sent) may go on. */
  allows(origin: string | string[] | undefined): boolean {
    if (origin === undefined) return true; // not a browser: the header's absence is no attack (§Security)
    const serialized = typeof origin === 'string' ? serializedOrigin(origin) : undefined;
    if (serialized === undefined) return false;
    return this.allowed.has(serialized) || (this.development && isLoopbackHost(new URL(serialized).hostname));
  }
}

/** The ASCII serialization of a tuple origin, or `undefined` for `null`, paths, credentials or garbage. */
function serializedOrigin(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    return undefined;
  }
  if (url.origin === 'null' || (url.protocol !== 'http:' && url.protocol !== 'https:')) return undefined;
  return url.origin;
}
