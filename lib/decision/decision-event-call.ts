import type { ExecutionContext } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import type { IncomingHttpHeaders } from 'node:http';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import type { TraceIds } from '../logging/trace-context.js';
import type { Call } from './call.js';

/**
 * The call a decision event is about (catalogue W1): the door, and the call as an audit line
 * names it. Never the raw path (it may hold ids or a credential), never a query string.
 * @publicApi
 */
export interface DecidedCall {
  /** The door: `http`, `graphql`, `ws`, `rpc`, `mcp` (an mcp-nest tool call). */
  readonly kind: string;
  /** The call as logs name it: `GET /orders`, `graphql query Orders.orders`, `ws orders:watch`, `socket.io connection`. */
  readonly name: string;
  /**
   * The HTTP method over HTTP (`GET`); else the door in capitals: `GRAPHQL`, `WS`, `RPC`, `MCP`, and
   * `GRAPHQL-WS` for a graphql-ws `connection_init`.
   */
  readonly method: string;
  /**
   * Over HTTP the route pattern the router matched, global prefix and version included
   * (`/api/v1/orders/:id` for `/api/v1/orders/42?x=1`); elsewhere the operation and field, the event
   * pattern or the handler; for a connection `connection ws`, `connection socket.io` or `connection`.
   */
  readonly route: string;
  /**
   * For a decision on a long-lived carrier as it opens (no Nest `ExecutionContext` exists yet):
   * `ws`, `socket.io` or `graphql-ws`. Absent for calls.
   */
  readonly carrier?: 'ws' | 'socket.io' | 'graphql-ws';
}

/** The {@link DecidedCall} of a call the core decided. */
export function decidedCallOf(call: Call): DecidedCall {
  const { kind, context, carrier } = call;
  const name = kind.describe(context, carrier);
  if (kind.name === 'http') {
    const raw = rawRequestOf(carrier);
    return { kind: kind.name, name, method: raw.method ?? 'GET', route: routeOf(context, carrier) };
  }
  const space = name.indexOf(' ');
  return { kind: kind.name, name, method: name.slice(0, space).toUpperCase(), route: name.slice(space + 1) };
}

/** The {@link DecidedCall} of a connection judged as it opens: `call` as the connection hooks name it (`socket.io connection`). */
export function openingCallOf(call: string): DecidedCall {
  const carrier = call.slice(0, call.indexOf(' ')) as 'ws' | 'socket.io' | 'graphql-ws';
  if (carrier === 'graphql-ws') return { kind: 'graphql', name: call, method: 'GRAPHQL-WS', route: 'connection', carrier };
  return { kind: 'ws', name: call, method: 'WS', route: `connection ${carrier}`, carrier };
}

/**
 * The route pattern the router matched (`/api/v1/orders/:id`), global prefix and version included,
 * not the request path: no ids or query strings in the logs (catalogue M22). Express and Fastify
 * both record it on the request; the controller's own paths are the fallback for other adapters.
 */
export function routeOf(context: ExecutionContext, request: object): string {
  const matched = request as { baseUrl?: unknown; route?: { path?: unknown }; routeOptions?: { url?: unknown } };
  const fastify = matched.routeOptions?.url;
  if (typeof fastify === 'string') return fastify;
  const express = matched.route?.path;
  if (typeof express === 'string') return (typeof matched.baseUrl === 'string' ? matched.baseUrl : '') + express;
  const join = (...parts: (string | string[] | undefined)[]) =>
    '/' + parts.map((p) => (Array.isArray(p) ? p[0] : p) ?? '').map((p) => p.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/');
  return join(
    Reflect.getMetadata(PATH_METADATA, context.getClass()) as string | string[] | undefined,
    Reflect.getMetadata(PATH_METADATA, context.getHandler()) as string | string[] | undefined,
  );
}

/** The trace of `call`'s HTTP request (its `traceparent` header), for an app without a tracer: no span id of ours. */
export function traceOfRequest(call: Call): TraceIds | undefined {
  const traceId = traceIdOfHeaders(call.kind.httpRequest(call.context, call.carrier)?.headers);
  return traceId === undefined ? undefined : { traceId, spanId: '' };
}

/** A W3C `traceparent` (version 00): version, 32-hex trace id, 16-hex parent id, flags. */
const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-[\da-f]{2}$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_PARENT = '0'.repeat(16);

/**
 * The trace id of a request's W3C `traceparent` header (W3C Trace Context §3.2), for events of an
 * app without an OpenTelemetry SDK; `undefined` when absent, repeated or malformed (an all-zero id
 * and version ff are invalid). The client's header: a correlation id, nothing is trusted because of it.
 */
export function traceIdOfHeaders(headers: IncomingHttpHeaders | undefined): string | undefined {
  const value = headers?.traceparent;
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  const match = TRACEPARENT.exec(value);
  // Version ff and all-zero ids are invalid (§3.2.2.1, §3.2.2.3), as an OpenTelemetry SDK judges them.
  if (match === null || match[1] === 'ff' || match[2] === ZERO_TRACE || match[3] === ZERO_PARENT) return undefined;
  return match[2];
}
