import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';

/**
 * The MCP TypeScript SDK's `AuthInfo` (`@modelcontextprotocol/sdk/server/auth/types`), restated so
 * this package does not depend on the SDK. The SDK's Streamable HTTP transport reads `req.auth` and
 * hands it to every tool as `extra.authInfo`.
 * @publicApi
 */
export interface McpAuthInfo {
  /** The raw access token (for an RFC 8693 exchange downstream; never log it). */
  readonly token: string;
  /** `client_id`: the agent. */
  readonly clientId: string;
  /** `scope`, split on spaces. */
  readonly scopes: string[];
  /** `exp`, in SECONDS since the epoch (the SDK's unit, unlike {@link AgentContext.expiresAt}). */
  readonly expiresAt: number;
  /** The RFC 8707 resource the token was verified for. */
  readonly resource: URL;
  /** Who and on whose behalf: `subject` (`sub`), `sessionId` (`sid`), `actor` (`act` chain), `agent`. */
  readonly extra: McpAuthInfoExtra;
}

/** `McpAuthInfo.extra`: the user, the session and the delegation chain, plus the whole {@link AgentContext}. */
export interface McpAuthInfoExtra extends Record<string, unknown> {
  readonly subject: string;
  readonly sessionId: string | undefined;
  readonly actor: AgentContext['actor'];
  readonly agent: AgentContext;
}

/**
 * Builds {@link McpAuthInfo} once per verified token: an agent object stands for exactly one token
 * and resource (the verified-token cache hands back the same object), so later requests with the
 * same token reuse it and the guard's cache-hit path allocates nothing.
 */
export class McpAuthInfoCache {
  private readonly built = new WeakMap<AgentContext, McpAuthInfo>();

  for(agent: AgentContext, token: string, resource: ProtectedResource): McpAuthInfo {
    let info = this.built.get(agent);
    if (info === undefined) {
      info = Object.freeze({
        token,
        clientId: agent.clientId,
        scopes: [...agent.scopes],
        expiresAt: Math.floor(agent.expiresAt.getTime() / 1000),
        resource: new URL(resource.id),
        extra: Object.freeze({ subject: agent.subject, sessionId: agent.sessionId, actor: agent.actor, agent }),
      });
      this.built.set(agent, info);
    }
    return info;
  }
}
