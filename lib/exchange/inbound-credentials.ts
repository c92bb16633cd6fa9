import type { ExecutionContext } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import { extractBearerToken } from '../resource-server/bearer-token.extractor.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import { graphqlCallKey, graphqlCarrier } from '../contexts/graphql.context.js';

/** The verified caller of a request and the bearer token the guard verified for it. */
export interface InboundCredentials {
  readonly agent: AgentContext;
  readonly token: string;
}

/**
 * The request object of each execution context, where the guard leaves the verified agent.
 * A context the guard learns to judge (GraphQL, WebSocket, RPC …) adds its reader here.
 */
const REQUEST_READERS: Readonly<Record<string, (context: ExecutionContext) => object | undefined>> = {
  http: (context) => context.switchToHttp().getRequest<object>(),
  // The carrier the guard judged and left the agent on: Apollo's `req`, Mercurius's `reply.request`,
  // the graphql-ws connection; for reference resolvers too (their context is the second argument).
  graphql: (context) => graphqlCarrier(context),
};

/** The request object of `context`, or undefined for a context without one. @internal */
export function requestOf(context: ExecutionContext): object | undefined {
  return REQUEST_READERS[context.getType()]?.(context);
}

/**
 * Where the grant of the call in `context` is kept: its request over HTTP; for a GraphQL field, the
 * field's own resolve info, since the fields of one operation share the request and each has its
 * own `@Grant()`. Undefined for a context without a request.
 * @internal
 */
export function grantHolderOf(context: ExecutionContext): object | undefined {
  return context.getType<string>() === 'graphql' ? graphqlCallKey(context) : requestOf(context);
}

/**
 * The verified agent and its bearer token, or undefined when the guard admitted no token (a
 * `@Public()` route, an unsupported context). Only a request whose `user` the guard itself set
 * counts: the token is then the one in the `Authorization` header it verified.
 * @internal
 */
export function inboundCredentials(context: ExecutionContext): InboundCredentials | undefined {
  const request = requestOf(context) as { user?: unknown } | undefined;
  if (!request || !isVerifiedAgent(request.user)) return undefined;
  try {
    const token = extractBearerToken(rawRequestOf(request));
    return token === undefined ? undefined : { agent: request.user, token };
  } catch {
    return undefined;
  }
}
