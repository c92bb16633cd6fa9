import type { Attributes } from '@opentelemetry/api';
import type { DecisionEvent } from '../decision/decision-events.js';
import { logCapped } from '../logging/log-safe.js';
import { KEYCARD_ATTRIBUTES as A } from './attribute-names.js';
import { mcpMethodName } from './mcp-method-names.js';

/** The MCP request a call carries, when it is one: read from the body only (catalogue Q31). */
export interface McpRequestName {
  /** The JSON-RPC method (`tools/call`), `batch` for a batch; absent when the body names none. */
  readonly method?: string;
  /** The tool of a `tools/call`, only when the app declares that tool. */
  readonly tool?: string;
}

/**
 * The span attributes of one decision. Claims are the token's (capped in length, never the token);
 * the HTTP path is left out (it may hold ids or a credential: the HTTP instrumentation records the
 * route pattern as `http.route`).
 */
export function decisionAttributes(event: DecisionEvent, mcp: McpRequestName | undefined): Attributes {
  const attributes: Attributes = { [A.DECISION]: event.type, [A.CALL_KIND]: mcp === undefined ? event.call.kind : 'mcp' };
  if (event.call.kind !== 'http') attributes[A.CALL_NAME] = logCapped(event.call.name);
  if (event.reason !== undefined) attributes[A.REASON] = event.reason;
  if (event.detail !== undefined) attributes[A.REASON_DETAIL] = event.detail;
  if (event.public === true) attributes[A.PUBLIC] = true;
  if (event.resource !== undefined) attributes[A.RESOURCE] = event.resource;
  if (event.requiredScopes !== undefined) attributes[A.SCOPES_REQUIRED] = [...event.requiredScopes];
  if (event.missingScopes !== undefined) attributes[A.SCOPES_MISSING] = [...event.missingScopes];
  if (mcp !== undefined) addMcp(attributes, mcp);
  addAgent(attributes, event);
  if (event.status >= 500) attributes[A.ERROR_TYPE] = event.reason ?? String(event.status);
  return attributes;
}

function addMcp(attributes: Attributes, mcp: McpRequestName): void {
  if (mcp.method !== undefined) attributes[A.MCP_METHOD] = mcpMethodName(mcp.method);
  if (mcp.tool !== undefined) attributes[A.MCP_TOOL] = logCapped(mcp.tool);
}

/** Who: only from a verified token (the event has none otherwise, catalogue W2). */
function addAgent(attributes: Attributes, event: DecisionEvent): void {
  const { performedBy } = event;
  if (performedBy === undefined) return;
  attributes[A.ISSUER] = logCapped(performedBy.issuer);
  attributes[A.AGENT_ID] = logCapped(performedBy.agentId);
  attributes[A.CLIENT_ID] = logCapped(performedBy.clientId);
  if (event.onBehalfOf !== undefined) attributes[A.USER] = logCapped(event.onBehalfOf);
  if (event.sessionId !== undefined) attributes[A.SESSION_ID] = logCapped(event.sessionId);
  if (event.tokenId !== undefined) attributes[A.TOKEN_ID] = logCapped(event.tokenId);
}
