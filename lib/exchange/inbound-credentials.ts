import type { ExecutionContext } from '@nestjs/common';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { connectionOf, verifiedTokenOf } from '../contexts/connection-state.js';
import type { KeycardContexts } from '../contexts/keycard-contexts.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import { BEARER_OR_DPOP, extractBearerToken } from '../resource-server/bearer-token.extractor.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';

/** The verified caller of a call and the bearer token the guard verified for it. */
export interface InboundCredentials {
  readonly agent: AgentContext;
  readonly token: string;
}

/**
 * The verified agent of the call in `context` and its bearer token, or undefined when the guard
 * admitted no token (a `@Public()` handler, a context the module does not judge). Only an agent the
 * guard itself put on the call's carrier counts, and the token is the one it was verified from:
 * - a connection's (`ws`, socket.io, graphql-ws, Mercurius subscriptions): the token verified when
 *   it opened, whose agent judges each of its messages;
 * - an HTTP request's (routes, GraphQL over HTTP, MCP tool calls, which ride on the MCP endpoint's
 *   request): the `Authorization` header;
 * - any other call's (gRPC metadata, `rpcTokenExtractor`): where the call's kind reads it for the guard.
 * @internal
 */
export function inboundCredentials(context: ExecutionContext, contexts: KeycardContexts): InboundCredentials | undefined {
  const kind = contexts.kindOf(context);
  const carrier = kind?.carrier(context);
  const agent = carrier?.user;
  if (kind === undefined || carrier === undefined || !isVerifiedAgent(agent)) return undefined;
  try {
    const token = verifiedToken(context, kind, carrier, agent);
    return token === undefined ? undefined : { agent, token };
  } catch {
    return undefined;
  }
}

function verifiedToken(context: ExecutionContext, kind: CallKind, carrier: Carrier, agent: AgentContext): string | undefined {
  const connection = connectionOf(carrier);
  // The guard admits a connection's messages with the agent it opened with; any other is not its token's.
  if (connection !== undefined) return connection.agent === agent ? verifiedTokenOf(connection) : undefined;
  // The guard admitted this request under a scheme it accepts (Bearer, or DPoP when on): either is its token.
  if (typeof (carrier as { headers?: unknown }).headers === 'object') return extractBearerToken(rawRequestOf(carrier), BEARER_OR_DPOP);
  return kind.token(context, carrier);
}
