import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';

/**
 * Injects the verified {@link AgentContext} of the request (`@Agent()`), or one of its fields
 * (`@Agent('clientId')`). Undefined on `@Public()` routes.
 *
 * @example
 * ```ts
 * @Get('data')
 * list(@Agent() agent: AgentContext, @Agent('subject') userId: string) { … }
 * ```
 * @publicApi
 */
export const Agent = createParamDecorator(
  (field: keyof AgentContext | undefined, context: ExecutionContext) => {
    const agent = context.getType() === 'rpc' ? mcpToolAgent(context) : context.switchToHttp().getRequest<{ user?: AgentContext }>().user;
    return field === undefined ? agent : agent?.[field];
  },
);

/** In an mcp-nest tool, the agent the guard put on the MCP request (the RPC context is an `McpContext`). */
function mcpToolAgent(context: ExecutionContext): AgentContext | undefined {
  const rpc = context.switchToRpc().getContext<{ getRawRequest?: () => { user?: AgentContext } | undefined } | undefined>();
  return typeof rpc?.getRawRequest === 'function' ? rpc.getRawRequest()?.user : undefined;
}
