import type { ExecutionContext, HttpServer } from '@nestjs/common';
import { type IncomingMessage, ServerResponse } from 'node:http';
import { pathOf, rawRequestOf } from '../resource-server/resource-resolver.js';
import type { CallKind, Carrier, Refusal } from './call-kind.interface.js';
import { HttpTokenReader } from './http-token-reader.js';
import { httpRequestOf, httpResponseOf } from './http-arguments.js';

/** Plain HTTP routes (Express or Fastify): the token in `Authorization`, the challenge on the response. */
export class HttpCallKind implements CallKind {
  readonly name = 'http';
  readonly sharedCarrier = false;

  accepts(type: string): boolean {
    return type === 'http';
  }

  /** @param tokens reads `Authorization` with the accepted schemes (`DPoP` when it is on). */
  constructor(
    private readonly adapter: () => HttpServer,
    private readonly tokens = new HttpTokenReader(),
  ) {}

  carrier(context: ExecutionContext): Carrier {
    return httpRequestOf<Carrier>(context);
  }

  httpRequest(_context: ExecutionContext, carrier: Carrier): IncomingMessage {
    return rawRequestOf(carrier);
  }

  httpResponse(context: ExecutionContext): ServerResponse {
    return rawResponseOf(httpResponseOf<object>(context));
  }

  isConnection(): boolean {
    return false;
  }

  connectionAgent(): undefined {
    return undefined;
  }

  token(_context: ExecutionContext, carrier: Carrier): string | undefined {
    return this.tokens.read(rawRequestOf(carrier));
  }

  refuse({ denial, context, carrier, headers }: Refusal): Error {
    writeChallenge(this.adapter(), httpResponseOf<object>(context), rawRequestOf(carrier), headers);
    return denial;
  }

  describe(_context: ExecutionContext, carrier: Carrier): string {
    const raw = rawRequestOf(carrier);
    return `${raw.method} ${pathOf(raw)}`;
  }
}

/**
 * Writes a refusal's headers on the response before the exception is thrown, so any exception
 * filter (or GraphQL server) keeps them; with an `Origin`, lets browser clients read the challenge (A34).
 */
export function writeChallenge(
  adapter: HttpServer,
  response: object | undefined,
  request: IncomingMessage,
  headers: Readonly<Record<string, string>>,
): void {
  if (response === undefined) return;
  for (const [name, value] of Object.entries(headers)) adapter.setHeader(response, name, value);
  if (request.headers.origin !== undefined && 'WWW-Authenticate' in headers) {
    adapter.setHeader(response, 'Access-Control-Expose-Headers', 'WWW-Authenticate');
  }
}

/** The Node response under the adapter's response object (Fastify wraps it in `raw`). */
export function rawResponseOf(response: object): ServerResponse {
  if (response instanceof ServerResponse) return response; // Express's, told by its class (see rawRequestOf)
  return ((response as { raw?: ServerResponse }).raw ?? response) as ServerResponse;
}
