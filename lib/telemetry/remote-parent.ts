import type { Context, Span } from '@opentelemetry/api';
import type { IncomingHttpHeaders } from 'node:http';
import type { DecisionEvent } from '../decision/decision-events.js';
import type { TraceIds } from '../logging/trace-context.js';
import type { OpenTelemetryApi } from './open-telemetry.js';

/** The W3C ids of `span`; `undefined` without a span or when its ids are invalid (all zero). */
export function idsOf(api: OpenTelemetryApi, span: Span | undefined): TraceIds | undefined {
  const ids = span?.spanContext();
  return ids !== undefined && api.isSpanContextValid(ids) ? { traceId: ids.traceId, spanId: ids.spanId } : undefined;
}

/**
 * The context a decision's own `keycard.decision` span starts in, when no span is active (a
 * `ws` or socket.io message, a connection as it opens): the caller's trace, read from the
 * `traceparent` (and `tracestate`) of the HTTP request the carrier came with (the upgrade or the
 * handshake), by the propagator the app registered, as the HTTP instrumentation reads a request's.
 * Without that header (or a propagator that reads it) the span is the root of a trace of its own.
 * The client's header: it names a trace to join, nothing is trusted because of it.
 */
export function remoteParentOf(api: OpenTelemetryApi, event: DecisionEvent): Context {
  const active = api.context.active();
  const headers = headersOf(event);
  if (headers?.traceparent === undefined) return active;
  // Read once per carrier: every message of a connection has the same handshake (a burst of
  // refused messages then costs no parse and no new context each).
  if (active !== api.ROOT_CONTEXT) return api.propagation.extract(active, headers);
  let parent = parents.get(headers);
  if (parent === undefined) {
    parent = api.propagation.extract(active, headers);
    parents.set(headers, parent);
  }
  return parent;
}

/** The remote parent read from a handshake's headers (with nothing else active), by those headers. */
const parents = new WeakMap<IncomingHttpHeaders, Context>();

/** The headers of the HTTP request behind the decided call, when there is one. */
function headersOf(event: DecisionEvent): IncomingHttpHeaders | undefined {
  const { source } = event;
  if (source === undefined) return event.traceparent === undefined ? undefined : { traceparent: event.traceparent };
  return source.kind.httpRequest(source.context, source.carrier)?.headers;
}
