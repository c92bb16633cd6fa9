import type { Call } from '../call.js';
import { KEYCARD_ARGUMENT_SCOPES } from './policy-metadata.js';

/** What a function sees when the call carries no arguments at all: a message without payload, `null`. */
const NO_ARGUMENTS: Readonly<Record<string, never>> = Object.freeze({});

/**
 * The arguments an argument-dependent requirement sees ({@link ArgumentScopes}), read from the
 * call as its own door delivers them, never from a header (catalogue T11, Q31):
 * - an MCP endpoint request: the `arguments` of the `tools/call` in the JSON-RPC body;
 * - GraphQL: the field's arguments after coercion (variables included; T12);
 * - a WebSocket or socket.io message: its payload; an RPC call (gRPC, TCP, an MCP tool): its data;
 * - HTTP: `{ params, query, body }` of the request.
 *
 * A message or RPC call without a payload (absent or `null`) gives `{}`, as an MCP `tools/call`
 * without `arguments` does: the client chose to send nothing, which is no bug of the app's function
 * (`args.visibility` on `undefined` would throw: a 500 and an error line per message, at the
 * client's will). Every other payload is passed on as sent, arrays and strings included.
 */
export function argumentsOf(call: Call): unknown {
  if (call.rules.mcp !== undefined) return toolArguments((call.carrier as { body?: unknown }).body);
  const { context } = call;
  switch (context.getType<string>()) {
    case 'graphql':
    case 'ws':
      return context.getArgs()[1] ?? NO_ARGUMENTS;
    case 'rpc':
      return context.getArgs()[0] ?? NO_ARGUMENTS;
    default: {
      const { params, query, body } = call.carrier as { params?: unknown; query?: unknown; body?: unknown };
      return { params, query, body };
    }
  }
}

/** `params.arguments` of a single JSON-RPC `tools/call`; `{}` when it has none. */
function toolArguments(body: unknown): unknown {
  const args = (body as { params?: { arguments?: unknown } } | null | undefined)?.params?.arguments;
  return args ?? NO_ARGUMENTS;
}

/** `@nestjs/microservices`' pattern metadata key (read by value: the package is an optional peer). */
const PATTERN_METADATA = 'microservices:pattern';
/** `@GrpcStreamMethod` (`rx_stream`) and `@GrpcStreamCall` (`pt_stream`): the requests arrive after the call is judged. */
const CLIENT_STREAMING = new Set(['rx_stream', 'pt_stream']);

/**
 * Refuses, at bootstrap, an argument-dependent requirement on a client-streaming gRPC handler: the
 * call is judged once when it opens, before any request message, so the function would judge the
 * stream object (no `id`, no `visibility`) and a deny-list would hand out the lesser scope for every
 * request that follows. Such a handler declares static scopes and judges each message itself.
 * @throws Error naming the handler.
 */
export function checkArgumentsKnownWhenJudged(handler: object, type: object, name: string): void {
  const patterns = Reflect.getMetadata(PATTERN_METADATA, handler) as unknown;
  if (!Array.isArray(patterns) || !patterns.some((p: { streaming?: unknown } | null) => CLIENT_STREAMING.has(p?.streaming as string))) return;
  if (Reflect.getMetadata(KEYCARD_ARGUMENT_SCOPES, handler) === undefined && Reflect.getMetadata(KEYCARD_ARGUMENT_SCOPES, type) === undefined) return;
  throw new Error(
    `KeycardModule: @RequireScopes.fromArguments() on ${name}, a client-streaming gRPC handler: the call is judged when it opens, before any request arrives, so there are no arguments to judge; declare static scopes (@RequireScopes) and check each request in the handler`,
  );
}
