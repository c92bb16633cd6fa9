/**
 * The attribute names this module writes. OpenTelemetry semantic-convention names where one exists
 * (`enduser.id`; `mcp.method.name` and `gen_ai.tool.name` of the MCP conventions; `error.type`),
 * the `keycard.` namespace for the rest. `client.*` is not used for the OAuth client: in the
 * conventions it names the network peer (`client.address`, `client.port`).
 * @publicApi
 */
export const KEYCARD_ATTRIBUTES = {
  /** `sub` of the verified token: the user the agent acts for. */
  USER: 'enduser.id',
  /** `iss` of the verified token (agent ids and `client_id`s are unique only at their issuer). */
  ISSUER: 'keycard.issuer',
  /** The stable agent id (`keycard_app_id`, else `client_id`; catalogue Q18). */
  AGENT_ID: 'keycard.agent.id',
  /** `client_id` of the verified token: the credential the agent used. */
  CLIENT_ID: 'keycard.client_id',
  SESSION_ID: 'keycard.session.id',
  /** `jti` of the verified token (never the token). */
  TOKEN_ID: 'keycard.token.id',
  /** `admitted`, `refused`, `step_up_required`, `revoked` or `rate_limited`. */
  DECISION: 'keycard.decision',
  /** Why it was refused, in the fixed vocabulary (`no_credentials`, `invalid_token`, …). */
  REASON: 'keycard.reason',
  /** The precise denial code (`signature_invalid`, `expired`, …). */
  REASON_DETAIL: 'keycard.reason.detail',
  SCOPES_REQUIRED: 'keycard.scopes.required',
  SCOPES_MISSING: 'keycard.scopes.missing',
  /** The resource identifier that judged the call. */
  RESOURCE: 'keycard.resource',
  /** The door: `http`, `graphql`, `ws`, `rpc`, `mcp`. */
  CALL_KIND: 'keycard.call.kind',
  /** The call outside plain HTTP (`rpc Orders.find`, `graphql query Orders.orders`); HTTP has `http.route`. */
  CALL_NAME: 'keycard.call.name',
  /** True for a `@Public()` call. */
  PUBLIC: 'keycard.public',
  MCP_METHOD: 'mcp.method.name',
  MCP_TOOL: 'gen_ai.tool.name',
  ERROR_TYPE: 'error.type',
} as const;

/** The `keycard.agent.id` of every metric series past `metrics.agentLimit` (catalogue W8). */
export const OTHER_AGENT = '_other';
