import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { carrierOf } from '../contexts/keycard-contexts.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';

/**
 * Injects the verified {@link AgentContext} of the call (`@Agent()`), or one of its fields
 * (`@Agent('clientId')`): in controllers, resolvers (as a resolver argument), gateway message
 * handlers and microservice handlers alike. Undefined on `@Public()` routes.
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
    // Only what the guard verified: an object anything else put on the request is no agent.
    const found = carrierOf(context)?.user;
    const agent = isVerifiedAgent(found) ? found : undefined;
    return field === undefined ? agent : agent?.[field];
  },
);
