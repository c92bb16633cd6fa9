import { SetMetadata } from '@nestjs/common';
import { KEYCARD_MCP_ENDPOINT } from '../keycard.constants.js';

/** Options of {@link McpEndpoint}. */
export interface McpEndpointOptions {
  /**
   * Put `req.auth` ({@link McpAuthInfo}, which holds the raw token) on the request for the MCP
   * SDK's transport to hand to tools as `extra.authInfo`.
   * @default true
   */
  authInfo?: boolean;
  /**
   * Scopes a tool of this endpoint requires beyond the endpoint's own (`@RequireScopes()`), by tool
   * name: for tools registered on the MCP SDK's own `McpServer`, which the module cannot see
   * (mcp-nest tools declare theirs with `@RequireScopes()` on the tool). Judged from the request
   * body (`tools/call` `params.name`, never a header) before the SDK runs the tool: a call that lacks
   * them gets 403 `insufficient_scope` naming the endpoint's and the tool's scopes (MCP step-up).
   * @example `@McpEndpoint({ tools: { purge_orders: ['admin'] } })`
   * @throws Error at bootstrap when a scope is not a non-empty string without spaces, or when two
   *   endpoints (or an mcp-nest tool) require different scopes of one tool name.
   */
  tools?: Readonly<Record<string, readonly string[]>>;
}

/**
 * Marks the controller (or route) that serves an MCP endpoint: the guard then, after admitting a
 * request, sets `req.auth` in the MCP SDK's `AuthInfo` shape, judges a `tools/call` against the
 * `@RequireScopes()` of the called mcp-nest tool (403 `insufficient_scope` + `scope`, so MCP clients
 * step up), and lets a tokenless `tools/call` of a `@Public()` tool through. Controllers built with
 * @rekog/mcp-nest's `McpHttpControllerFor()` / `StreamableHttpController` are recognised without it.
 *
 * @example
 * ```ts
 * @McpEndpoint()
 * @Controller('mcp')
 * export class McpController { @Post() post(@Req() req, @Res() res) { … transport.handleRequest(req, res, req.body) } }
 * ```
 * @publicApi
 */
export const McpEndpoint = (options: McpEndpointOptions = {}) =>
  SetMetadata(KEYCARD_MCP_ENDPOINT, { authInfo: options.authInfo ?? true, tools: options.tools ?? {} });

/** What `@McpEndpoint()` (or an mcp-nest controller base) asks of the guard on one route. */
export interface McpEndpointRule {
  readonly authInfo: boolean;
  /** Scopes of the endpoint's SDK tools, by name (`@McpEndpoint({ tools })`). */
  readonly tools?: Readonly<Record<string, readonly string[]>>;
}

/** mcp-nest's controller bases: `StreamableHttpController`, and the class `McpHttpControllerFor()` returns. */
const MCP_NEST_ENDPOINT_BASES = new Set(['StreamableHttpController', 'BoundMcpHttpController']);
const MCP_NEST_ENDPOINT: McpEndpointRule = Object.freeze({ authInfo: true });

/** Whether a route serves MCP (`@McpEndpoint()` on it or its class, or an mcp-nest controller base), once per handler. */
export function mcpEndpointRuleOf(handler: object, type: object): McpEndpointRule | undefined {
  const own = (Reflect.getMetadata(KEYCARD_MCP_ENDPOINT, handler) ?? Reflect.getMetadata(KEYCARD_MCP_ENDPOINT, type)) as McpEndpointRule | undefined;
  return own ?? (extendsMcpNestBase(type) ? MCP_NEST_ENDPOINT : undefined);
}

/** A controller built on mcp-nest's bases (read by name: mcp-nest is never imported). */
export function extendsMcpNestBase(type: object): boolean {
  for (let t = Object.getPrototypeOf(type) as { name?: string } | null; t && t !== Function.prototype; t = Object.getPrototypeOf(t) as { name?: string } | null) {
    if (t.name !== undefined && MCP_NEST_ENDPOINT_BASES.has(t.name)) return true;
  }
  return false;
}
