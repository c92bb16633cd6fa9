import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** What {@link filterToolListing} needs of the caller and the app. */
export interface ToolListing {
  /** Whether the caller's token may call the tool named so. */
  permits(name: string): boolean;
  /** Called once per answer in which the app marked a filtered list `public`. */
  warnPublic(): void;
}

type Result = { tools?: unknown; cacheScope?: unknown; ttlMs?: unknown };
type WriteHead = ServerResponse['writeHead'];

/**
 * Holds back the answer to one `tools/list` request on `response` and, when it ends, writes it with
 * every list result filtered to the tools the caller may call and marked `cacheScope: "private"`
 * with a `ttlMs` ≥ 0 (MCP 2026-07-28 server/utilities/caching, §Cache Scope Field: "`private` … for
 * filtered list results that vary per user"; §Time-to-Live; catalogue U10, Q32). Works on a JSON
 * answer and on an SSE one (each `data:` line is one JSON-RPC message), whichever MCP server wrote
 * it; anything that is not a list result passes through unchanged. A list is one message, so
 * holding it back until the end costs no streaming.
 */
export function filterToolListing(response: ServerResponse, listing: ToolListing): void {
  const original = { writeHead: response.writeHead, write: response.write, end: response.end };
  const chunks: Buffer[] = [];
  let head: Parameters<WriteHead> | undefined;
  const collect = (chunk: unknown, encoding: unknown) => {
    if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'));
    }
  };
  response.writeHead = ((...args: Parameters<WriteHead>) => {
    head = args;
    return response;
  }) as WriteHead;
  response.write = ((chunk: unknown, encoding?: unknown, done?: unknown) => {
    collect(chunk, encoding);
    const callback = typeof encoding === 'function' ? encoding : done;
    if (typeof callback === 'function') process.nextTick(callback as () => void);
    return true;
  }) as ServerResponse['write'];
  response.end = ((chunk?: unknown, encoding?: unknown, done?: unknown) => {
    collect(chunk, encoding);
    Object.assign(response, original);
    const body = Buffer.from(rewrite(Buffer.concat(chunks).toString('utf8'), listing), 'utf8');
    if (head !== undefined) response.writeHead(...withLength(head, body.length));
    else if (!response.headersSent && response.hasHeader('content-length')) response.setHeader('content-length', body.length);
    const callback = [chunk, encoding, done].find((arg) => typeof arg === 'function') as (() => void) | undefined;
    return response.end(body, callback);
  }) as ServerResponse['end'];
}

/** `writeHead` arguments with any `Content-Length` in their header object set to `length`. */
function withLength(args: Parameters<WriteHead>, length: number): Parameters<WriteHead> {
  return args.map((arg, i) => {
    if (i === 0 || typeof arg !== 'object' || arg === null || Array.isArray(arg)) return arg;
    const headers: OutgoingHttpHeaders = { ...(arg as OutgoingHttpHeaders) };
    for (const name of Object.keys(headers)) if (name.toLowerCase() === 'content-length') headers[name] = length;
    return headers;
  }) as Parameters<WriteHead>;
}

/** The answer with its list results filtered: a JSON body, or SSE `data:` lines. */
function rewrite(text: string, listing: ToolListing): string {
  const whole = rewriteMessage(text, listing);
  if (whole !== undefined) return whole;
  return text.replace(/^data: ?(.*)$/gm, (line, json: string) => {
    const message = rewriteMessage(json, listing);
    return message === undefined ? line : `data: ${message}`;
  });
}

/** One JSON-RPC message (or batch) with its tool list filtered, or `undefined` when `text` is not JSON. */
function rewriteMessage(text: string, listing: ToolListing): string | undefined {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return undefined;
  }
  for (const one of [message].flat()) {
    const result = (one as { result?: Result } | null)?.result;
    if (typeof result === 'object' && result !== null && Array.isArray(result.tools)) filterResult(result, listing);
  }
  return JSON.stringify(message);
}

function filterResult(result: Result, listing: ToolListing): void {
  result.tools = (result.tools as { name?: unknown }[]).filter((tool) => typeof tool?.name !== 'string' || listing.permits(tool.name));
  if (result.cacheScope === 'public') listing.warnPublic();
  result.cacheScope = 'private';
  if (typeof result.ttlMs !== 'number' || !(result.ttlMs >= 0)) result.ttlMs = 0;
}
