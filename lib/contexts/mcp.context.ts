import type { ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import type { CallKind, Carrier, Refusal } from './call-kind.interface.js';
import { loadMicroservices } from './optional-peers.js';
import { errorFields } from './ws.context.js';

/** The RPC context of an @rekog/mcp-nest tool call (its `McpContext`), read by shape: mcp-nest is never imported. */
interface McpNestContext {
  getRawRequest(): unknown;
}

/**
 * The HTTP request behind an mcp-nest tool call (an `rpc` context whose RPC context has
 * `getRawRequest()`): the Express or Fastify request, `null` when the call came without one
 * (stdio), `undefined` when the call is no MCP tool call.
 */
export function mcpRequestOf(context: ExecutionContext): Carrier | null | undefined {
  const rpc = context.switchToRpc().getContext<McpNestContext | undefined>();
  if (typeof rpc?.getRawRequest !== 'function') return undefined;
  return (rpc.getRawRequest() as Carrier | undefined) ?? null;
}

/**
 * Tool calls of @rekog/mcp-nest (catalogue N12, N14), judged in mcp-nest's RPC pipeline with or
 * without `inheritAppConfig` (`McpTools` puts a guard on every tool controller, which judges each call
 * with the guard of the app serving it: `lib/mcp/mcp-tool-apps.ts`). The call rides on
 * the HTTP request the guard judged on the MCP endpoint, like a socket message on its handshake: the
 * agent verified there from that request's token, for that request's resource, is judged again for
 * the tool's own `@RequireScopes()` (so every call of a JSON-RPC batch is judged) and expiry. A call
 * whose request never passed the guard (a self-mounted endpoint, stdio) is refused. Refusals are an
 * `RpcException` whose `message` mcp-nest returns as the tool's `isError` result:
 * `insufficient_scope: this tool requires scope "admin"`.
 */
export class McpCallKind implements CallKind {
  readonly name = 'mcp';
  /** The calls of one batch share the request; the agent on it was admitted for the endpoint, not for a tool. */
  readonly sharedCarrier = true;

  /** An mcp-nest tool call: an rpc context carrying its HTTP request. */
  accepts(type: string, context: ExecutionContext): boolean {
    return type === 'rpc' && mcpRequestOf(context) !== undefined;
  }

  /** @param unguarded called when a tool call's request did not pass the guard (says how to mount the endpoint). */
  constructor(private readonly unguarded: (context: ExecutionContext) => void) {}

  carrier(context: ExecutionContext): Carrier {
    // A call without an HTTP request (stdio) gets a carrier of its own: the refusal's state hangs from it.
    return mcpRequestOf(context) ?? {};
  }

  httpRequest(_context: ExecutionContext, carrier: Carrier): IncomingMessage | undefined {
    return (carrier as Partial<IncomingMessage>).headers === undefined ? undefined : rawRequestOf(carrier);
  }

  /** The HTTP request has its own audit line (the endpoint's); the tool's decision is audited when made. */
  httpResponse(): undefined {
    return undefined;
  }

  isConnection(): boolean {
    return true;
  }

  connectionAgent(carrier: Carrier) {
    const agent = carrier.user;
    return isVerifiedAgent(agent) ? agent : undefined;
  }

  /** Reached only when the request carries no agent of the guard's: it was never judged, so the call has no credentials here. */
  token(context: ExecutionContext): undefined {
    this.unguarded(context);
    return undefined;
  }

  refuse({ denial }: Refusal): Promise<Error> {
    return toolRefusal(denial);
  }

  describe(context: ExecutionContext): string {
    return `mcp ${context.getClass().name}.${context.getHandler().name}`;
  }
}

/**
 * A refused mcp-nest tool call: an `RpcException` whose `message` mcp-nest returns as the tool's
 * `isError` text (`insufficient_scope: this tool requires scope "admin"`), with the error fields.
 */
export async function toolRefusal(denial: KeycardException): Promise<Error> {
  const { RpcException } = await loadMicroservices();
  const fields = errorFields(denial);
  const message = fields.scope !== undefined
    ? `${fields.error}: this tool requires scope "${fields.scope}"`
    : `${fields.error ?? 'unauthorized'}: ${fields.error_description}`;
  return new RpcException({ status: 'error', message, ...fields });
}
