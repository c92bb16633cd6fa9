import type { IncomingHttpHeaders } from 'node:http';

/** `_meta` key of the protocol version a 2026-07-28 request carries in its body. */
const BODY_VERSION = 'io.modelcontextprotocol/protocolVersion';
/** The first revision whose requests must repeat method and name in headers (SEP-2243). */
const HEADER_DUTY_SINCE = '2026-07-28';
const REVISION = /^\d{4}-\d{2}-\d{2}$/;
/** Methods whose target is named in `Mcp-Name`, and where the body names it. */
const NAMED_BY: Readonly<Record<string, 'name' | 'uri'>> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };
/** SEP-2243 §Value Encoding: a value that is not plain ASCII travels as `=?base64?…?=`. */
const BASE64_SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/;
/** Wrapped like a sentinel; without both ends a value is a literal (SEP-2243 §Value Encoding). */
const SENTINEL_SHAPED = /^=\?base64\?.*\?=$/;

/** Custom headers mirroring tool arguments (`x-mcp-header`), as Node lower-cases them. */
const PARAM_HEADER = 'mcp-param-';
const PARAM_HEADER_LABEL = 'An Mcp-Param-*';
/** RFC 9110 §5.5 field content limited to ASCII (a value of spaces only is empty after trimming). */
const VISIBLE_ASCII = /^(?:[\x21-\x7E](?:[\x20-\x7E]*[\x21-\x7E])?)?$/;

type JsonRpcBody = { method?: unknown; params?: { name?: unknown; uri?: unknown; _meta?: Record<string, unknown> } };

/**
 * Where the headers of an MCP request disagree with its body (MCP streamable HTTP 2026-07-28,
 * §Protocol Version Header, §Standard Request Headers, §Server Validation: "MUST reject … 400 …
 * `HeaderMismatch`"), or `undefined` when they agree. Checked before any decision reads the request
 * (catalogue Q31), and every authorization input is read from the body, so a header can never
 * steer a decision. A request of an earlier revision (no version in its body) has no header duty.
 * @returns a fixed description naming the header (never its value).
 */
export function headerMismatch(headers: IncomingHttpHeaders, body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const rpc = body as JsonRpcBody;
  const bodyVersion = rpc.params?._meta?.[BODY_VERSION];
  const headerVersion = single(headers['mcp-protocol-version']);
  if (bodyVersion !== undefined && headerVersion !== bodyVersion) return 'MCP-Protocol-Version does not match the request body';
  // No version in the body: not a 2026-07-28 request (the server refuses it as such, -32602) or an earlier one.
  if (!hasHeaderDuty(bodyVersion)) return undefined;
  if (decoded(single(headers['mcp-method'])) !== rpc.method) return 'Mcp-Method does not match the request body';
  const named = typeof rpc.method === 'string' ? NAMED_BY[rpc.method] : undefined;
  if (named !== undefined && decoded(single(headers['mcp-name'])) !== rpc.params?.[named]) return 'Mcp-Name does not match the request body';
  return malformedParamHeader(headers);
}

/**
 * SEP-2243 §Value Encoding, §Server Behavior for Custom Headers: an `Mcp-Param-*` value is visible
 * ASCII (anything else travels in the Base64 sentinel form), and a sentinel must hold valid Base64.
 * Checked on every tool, without its schema, so a value no server could compare is refused before
 * any token work on every MCP shape; whether a well-formed value matches its argument is the MCP
 * server's check (it knows which argument each `x-mcp-header` mirrors).
 */
function malformedParamHeader(headers: IncomingHttpHeaders): string | undefined {
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(PARAM_HEADER)) continue;
    const text = single(value);
    if (text === undefined || !VISIBLE_ASCII.test(text)) return `${PARAM_HEADER_LABEL} header is not visible ASCII`;
    if (SENTINEL_SHAPED.test(text) && (!BASE64_SENTINEL.test(text) || decoded(text) === undefined)) return `${PARAM_HEADER_LABEL} header is not valid Base64`;
  }
  return undefined;
}

/** A known revision of 2026-07-28 or later (an unknown version is the server's to refuse as unsupported). */
function hasHeaderDuty(version: unknown): boolean {
  return typeof version === 'string' && REVISION.test(version) && version >= HEADER_DUTY_SINCE;
}

/** One header's value without surrounding whitespace (RFC 9110 §5.5); a repeated header is no value. */
function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value.trim() : undefined;
}

/** A header value with its Base64 sentinel form decoded (invalid Base64 matches nothing). */
function decoded(value: string | undefined): string | undefined {
  const wrapped = value === undefined ? null : BASE64_SENTINEL.exec(value);
  if (wrapped === null) return value;
  const text = Buffer.from(wrapped[1], 'base64');
  return text.toString('base64') === wrapped[1] ? text.toString('utf8') : undefined;
}
