import type { Attributes } from '@opentelemetry/api';
import type { DecisionEvent } from '../decision/decision-events.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { logSafe } from '../logging/log-safe.js';
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
 * The span attributes of one decision. Claims are the token's (escaped and capped, never the token);
 * the HTTP path is left out (it may hold ids or a credential: the HTTP instrumentation records the
 * route pattern as `http.route`).
 */
export function decisionAttributes(event: DecisionEvent, mcp: McpRequestName | undefined): Attributes {
  const attributes: Attributes = { [A.DECISION]: event.type, [A.CALL_KIND]: mcp === undefined ? event.call.kind : 'mcp' };
  if (event.call.kind !== 'http') attributes[A.CALL_NAME] = logSafe(event.call.name);
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
  if (mcp.tool !== undefined) attributes[A.MCP_TOOL] = logSafe(mcp.tool);
}

/** Who: only from a verified token (the event has none otherwise, catalogue W2). */
function addAgent(attributes: Attributes, event: DecisionEvent): void {
  const { agent } = event;
  if (event.performedBy === undefined || agent === undefined) return;
  let who = agentAttributes.get(agent);
  if (who === undefined) {
    who = agentAttributesOf(agent);
    agentAttributes.set(agent, who);
  }
  Object.assign(attributes, who);
}

/**
 * The agent's attributes, by the verified agent they describe: its claims escaped and capped once
 * (a token's agent is cached with the token, so its next calls reuse them).
 */
const agentAttributes = new WeakMap<AgentContext, Attributes>();

/**
 * The verified claims as attributes, escaped as the audit line's text rendering escapes them
 * (CR, LF, ESC, C1, U+2028/2029 and bidi controls as `\n`, `\u202e`: CWE-117; a collector or a
 * trace viewer prints them) and capped at `LOG_VALUE_MAX_LENGTH` (256) characters.
 */
function agentAttributesOf(agent: AgentContext): Attributes {
  const attributes: Attributes = { [A.ISSUER]: logSafe(agent.issuer), [A.AGENT_ID]: logSafe(agent.agentId), [A.CLIENT_ID]: logSafe(agent.clientId) };
  if (agent.subject !== undefined) attributes[A.USER] = logSafe(agent.subject);
  if (agent.sessionId !== undefined) attributes[A.SESSION_ID] = logSafe(agent.sessionId);
  if (agent.tokenId !== undefined) attributes[A.TOKEN_ID] = logSafe(agent.tokenId);
  return attributes;
}
