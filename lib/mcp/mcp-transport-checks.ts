import { HttpException, HttpStatus } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { headerMismatch } from './mcp-header-consistency.js';
import type { McpOriginPolicy } from './mcp-origin.js';

/** JSON-RPC `Invalid Request`, the code of the `Origin` refusal (catalogue Q30). */
const INVALID_REQUEST = -32600;
/** JSON-RPC `HeaderMismatch` (MCP streamable HTTP 2026-07-28, §Server Validation). */
const HEADER_MISMATCH = -32020;

/**
 * An MCP request refused by its transport checks, before any token work: a JSON-RPC error body and
 * no `WWW-Authenticate` (a transport refusal, not an OAuth challenge: catalogue Q30, Q31; the one
 * exemption from INV1). Thrown from the guard, so Nest answers it as it answers any HttpException.
 */
export class McpTransportRefusal extends HttpException {
  /** What the decision event of the refusal names as its `detail` (the JSON-RPC body is the client's answer). */
  readonly code: 'forbidden_origin' | 'header_mismatch';

  constructor(status: HttpStatus.FORBIDDEN | HttpStatus.BAD_REQUEST, error: { code: number; message: string }, id?: unknown) {
    super(id === undefined ? { jsonrpc: '2.0', error } : { jsonrpc: '2.0', id, error }, status);
    this.code = status === HttpStatus.FORBIDDEN ? 'forbidden_origin' : 'header_mismatch';
  }
}

/**
 * What every request to an MCP endpoint passes first, in this order (catalogue U8): `Origin`
 * (403, no `id`), then its headers against its body (400 `HeaderMismatch`, with the request's `id`).
 * @throws McpTransportRefusal
 */
export function checkMcpTransport(raw: IncomingMessage, body: unknown, origins: McpOriginPolicy): void {
  if (!origins.allows(raw.headers.origin)) {
    throw new McpTransportRefusal(HttpStatus.FORBIDDEN, { code: INVALID_REQUEST, message: 'Forbidden origin' });
  }
  const mismatch = headerMismatch(raw.headers, body);
  if (mismatch !== undefined) {
    throw new McpTransportRefusal(HttpStatus.BAD_REQUEST, { code: HEADER_MISMATCH, message: `Header mismatch: ${mismatch}` }, requestId(body));
  }
}

/** The JSON-RPC `id` of a single request, else `null` (JSON-RPC 2.0 §5: unknown id). */
function requestId(body: unknown): unknown {
  const id = (body as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}
