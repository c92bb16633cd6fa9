import type { Call } from '../call.js';

/**
 * The arguments an argument-dependent requirement sees ({@link ArgumentScopes}), read from the
 * call as its own door delivers them, never from a header (catalogue T11, Q31):
 * - an MCP endpoint request: the `arguments` of the `tools/call` in the JSON-RPC body;
 * - GraphQL: the field's arguments after coercion (variables included; T12);
 * - a WebSocket or socket.io message: its payload; an RPC call (gRPC, TCP, an MCP tool): its data;
 * - HTTP: `{ params, query, body }` of the request.
 */
export function argumentsOf(call: Call): unknown {
  if (call.rules.mcp !== undefined) return toolArguments((call.carrier as { body?: unknown }).body);
  const { context } = call;
  switch (context.getType<string>()) {
    case 'graphql':
    case 'ws':
      return context.getArgs()[1];
    case 'rpc':
      return context.getArgs()[0];
    default: {
      const { params, query, body } = call.carrier as { params?: unknown; query?: unknown; body?: unknown };
      return { params, query, body };
    }
  }
}

/** `params.arguments` of a single JSON-RPC `tools/call`; `{}` when it has none. */
function toolArguments(body: unknown): unknown {
  const args = (body as { params?: { arguments?: unknown } } | null | undefined)?.params?.arguments;
  return args ?? {};
}
