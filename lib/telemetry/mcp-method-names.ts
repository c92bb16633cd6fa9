/**
 * The JSON-RPC methods the MCP specification defines (revisions 2025-03-26 to 2026-07-28), and
 * `batch` for a batch: what `mcp.method.name` may hold. The body's method is the caller's choice,
 * so anything else is recorded as `_OTHER` (the OpenTelemetry convention for values outside a known
 * set, as `http.request.method`): never a caller-chosen attribute value, hence no unbounded series
 * when metrics are derived from spans, and no control characters in a span.
 */
const MCP_METHODS: ReadonlySet<string> = new Set([
  'batch',
  'initialize', 'ping',
  'tools/list', 'tools/call',
  'resources/list', 'resources/templates/list', 'resources/read', 'resources/subscribe', 'resources/unsubscribe',
  'prompts/list', 'prompts/get',
  'completion/complete', 'logging/setLevel',
  'sampling/createMessage', 'elicitation/create', 'roots/list',
  'tasks/get', 'tasks/list', 'tasks/result', 'tasks/cancel',
  'notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/message',
  'notifications/resources/updated', 'notifications/resources/list_changed', 'notifications/tools/list_changed',
  'notifications/prompts/list_changed', 'notifications/roots/list_changed', 'notifications/elicitation/complete',
  'notifications/tasks/status',
]);

/** `method` when the MCP specification defines it, else `_OTHER`. */
export function mcpMethodName(method: string): string {
  return MCP_METHODS.has(method) ? method : '_OTHER';
}
