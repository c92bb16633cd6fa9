/**
 * The seam between the audit log and a tracer: the audit log asks {@link TraceContextSource} for the
 * ids of the span active when a call is decided, and writes them in its record, without knowing
 * OpenTelemetry. `nestjs-keycard/telemetry` provides it; without it, records carry no ids.
 */
import type { DecisionEvent } from '../decision/decision-events.js';

/** W3C trace-context ids: 32 and 16 lowercase hex characters. */
export interface TraceIds {
  readonly traceId: string;
  readonly spanId: string;
}

/** Gives the ids of the span active now, or `undefined` when none is. */
export interface TraceContextSource {
  current(): TraceIds | undefined;
  /**
   * The ids of the span that records `decision`: the active span, else (a gateway message, a
   * connection as it opens) the tracer's own span for it, which continues the carrier's
   * `traceparent`. The audit log names that span, so a record and its span always match.
   * Absent: the audit log uses {@link current}.
   */
  spanOf?(decision: DecisionEvent): TraceIds | undefined;
  /**
   * Runs `work` inside a new CLIENT span `name` with `attributes`, handing it the headers that carry
   * the span's context to the server (W3C `traceparent`, `tracestate`); the span ends when `work`
   * settles, with status `ERROR` when it rejects. Absent: `work` runs with no headers.
   */
  clientSpan?<T>(name: string, attributes: Readonly<Record<string, string | readonly string[]>>, work: (headers: Record<string, string>) => Promise<T>): Promise<T>;
}

/** Injection token of the app's {@link TraceContextSource} (optional). */
export const KEYCARD_TRACE_CONTEXT = Symbol('KEYCARD_TRACE_CONTEXT');
