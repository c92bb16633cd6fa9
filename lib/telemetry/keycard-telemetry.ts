import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit, Optional } from '@nestjs/common';
import type { Attributes, Span, Tracer } from '@opentelemetry/api';
import { DecisionEvents, type DecisionEvent } from '../decision/decision-events.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { TraceContextSource, TraceIds } from '../logging/trace-context.js';
import type { KeycardOptions } from '../keycard-options.js';
import { McpTools } from '../mcp/mcp-tools.js';
import { decisionAttributes, type McpRequestName } from './decision-attributes.js';
import { DecisionMetrics } from './decision-metrics.js';
import { loadOpenTelemetry, type OpenTelemetryApi } from './open-telemetry.js';
import { idsOf, remoteParentOf } from './remote-parent.js';
import type { ResolvedTelemetryOptions } from './telemetry-options.js';

/** Injection token of the resolved {@link KeycardTelemetryOptions}. */
export const KEYCARD_TELEMETRY_OPTIONS = Symbol('KEYCARD_TELEMETRY_OPTIONS');

/** The instrumentation scope every span and metric of the module is recorded under. */
export const INSTRUMENTATION_SCOPE = 'nestjs-keycard';

/**
 * Decision events in OpenTelemetry (catalogue §W): an observer of {@link DecisionEvents} (STYLE 26)
 * that neither the guard nor the decision core knows. Once `@opentelemetry/api` is loaded, every
 * decision puts its attributes on the active span (or, where none is active, on a short
 * `keycard.decision` span of its own) and is counted in the decision metrics.
 *
 * Span status follows the HTTP and RPC server conventions (catalogue W6, W7, Q41): a refusal
 * (401, 403, 429; gRPC 16 and 7) leaves it unset; only a 5xx decision (the zone unavailable, a
 * server misconfiguration) marks the span as an error. Nothing it writes holds a token, a secret or
 * an `Authorization` value: only the verified token's claims, capped in length.
 */
@Injectable()
export class KeycardTelemetry implements OnModuleInit, OnModuleDestroy, TraceContextSource {
  private unsubscribe?: () => void;
  private tracer?: Tracer;
  private api?: OpenTelemetryApi;
  private metrics?: DecisionMetrics;
  /** Spans that carry a refusal: a later admission sharing the carrier (another GraphQL field) keeps it. */
  private readonly refused = new WeakSet<Span>();
  /**
   * The decision that has a `keycard.decision` span of its own, and that span. An event reaches
   * every subscriber in one synchronous turn, so one slot is enough: whichever of this recorder and
   * the audit log ({@link spanOf}) asks first starts the span, the other finds it here.
   */
  private ownEvent?: DecisionEvent;
  private ownSpan?: Span;

  private readonly events: DecisionEvents;
  private readonly mcp: McpTools;
  private readonly keycard: KeycardOptions;

  /**
   * @throws Error when the app does not import `KeycardModule.forRoot()` (or `forRootAsync`): the
   * decisions it observes are that module's. Said plainly instead of Nest's "can't resolve
   * dependencies of KeycardTelemetry".
   */
  constructor(
    @Inject(KEYCARD_TELEMETRY_OPTIONS) private readonly options: ResolvedTelemetryOptions,
    // Optional parameters, not `T | undefined`: decorator metadata names the class only then.
    @Optional() events?: DecisionEvents,
    @Optional() mcp?: McpTools,
    @Optional() @Inject(KEYCARD_OPTIONS) keycard?: KeycardOptions,
  ) {
    if (events === undefined || mcp === undefined || keycard === undefined) {
      throw new Error('KeycardTelemetryModule needs KeycardModule.forRoot() (or forRootAsync()) imported in the same app: it records the decisions of that module');
    }
    this.events = events;
    this.mcp = mcp;
    this.keycard = keycard;
  }

  /** True once `@opentelemetry/api` is loaded and decisions are recorded. */
  get enabled(): boolean {
    return this.unsubscribe !== undefined;
  }

  async onModuleInit(): Promise<void> {
    const api = await loadOpenTelemetry();
    if (api === undefined) {
      this.keycard.logger.warn('KeycardTelemetryModule: @opentelemetry/api is not installed, so decisions are neither traced nor counted (npm install @opentelemetry/api)');
      return;
    }
    this.api = api;
    if (this.options.traces) this.tracer = api.trace.getTracer(INSTRUMENTATION_SCOPE);
    if (this.options.metrics !== false) this.metrics = new DecisionMetrics(api.metrics.getMeter(INSTRUMENTATION_SCOPE), this.options.metrics);
    this.unsubscribe = this.events.subscribe((event) => this.onDecision(event));
    this.events.traceWith(this);
  }

  /** The ids of the active span, for the audit record (`traceId`, `spanId`); `undefined` when none is valid. */
  current(): TraceIds | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    return idsOf(api, api.trace.getSpan(api.context.active()));
  }

  /**
   * The ids of the span that records `event` (catalogue W1): the active span, else the module's own
   * `keycard.decision` span for it (started here when the audit log asks before this recorder
   * records it, see {@link ownEvent}); `undefined` when neither exists or its ids are invalid.
   */
  spanOf(event: DecisionEvent): TraceIds | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    // Once unsubscribed (the app closing), nothing would end a span started here.
    return this.enabled ? idsOf(api, this.recorderOf(event)) : this.current();
  }

  /**
   * A CLIENT span around a request the module makes (`keycard.exchange`: a token request to the
   * zone, catalogue W5), child of the active span; `work` gets the W3C trace-context headers of
   * the new span to send (`traceparent`, `tracestate`; never `baggage`, which the caller chose).
   * Without a tracer (`traces: false`, or before start) `work` runs alone.
   */
  clientSpan<T>(name: string, attributes: Readonly<Record<string, string | readonly string[]>>, work: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    const { api, tracer } = this;
    if (api === undefined || tracer === undefined) return work({});
    const span = tracer.startSpan(name, { kind: api.SpanKind.CLIENT, attributes: attributes as Attributes });
    const context = api.trace.setSpan(api.context.active(), span);
    const headers: Record<string, string> = {};
    // Trace context only: the active context's baggage came from the caller's `baggage` header
    // (client-chosen, up to 8 KB), and the zone is another trust domain (OpenTelemetry Baggage API,
    // security considerations); the zone needs only to join the trace.
    api.propagation.inject(api.propagation.deleteBaggage(context), headers);
    return api.context.with(context, () => work(headers)).then(
      (result) => {
        span.end();
        return result;
      },
      (error: unknown) => {
        // The error's name only: a message could hold what the zone answered.
        span.setStatus({ code: api.SpanStatusCode.ERROR });
        span.setAttribute('error.type', (error as { kind?: unknown })?.kind === undefined ? 'Error' : String((error as { kind: unknown }).kind));
        span.end();
        throw error;
      },
    );
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.events.traceWith(undefined);
    this.ownEvent = this.ownSpan = undefined;
  }

  private onDecision(event: DecisionEvent): void {
    const mcp = this.mcpRequestOf(event);
    if (this.tracer !== undefined) this.trace(decisionAttributes(event, mcp), event);
    this.metrics?.record(event, mcp === undefined ? event.call.kind : 'mcp');
  }

  /**
   * The active span gets the attributes; with no active span, a `keycard.decision` span of its own.
   * A span that is not recording (sampled out) gets nothing.
   */
  private trace(attributes: Attributes, event: DecisionEvent): void {
    const api = this.api!;
    const span = this.recorderOf(event)!;
    if (this.ownEvent === event) {
      span.setAttributes(attributes);
      if (event.status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR });
      span.end();
      return;
    }
    if (!span.isRecording()) return;
    if (event.status < 400 && this.refused.has(span)) return;
    span.setAttributes(attributes);
    if (event.status >= 400) this.refused.add(span);
    if (event.status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR });
  }

  /**
   * The span that records `event`: the active one (the HTTP or RPC server span), else its own
   * `keycard.decision` span, started once per event; `undefined` without a tracer and an active span.
   */
  private recorderOf(event: DecisionEvent): Span | undefined {
    const api = this.api!;
    const active = api.trace.getSpan(api.context.active());
    if (active !== undefined || this.tracer === undefined) return active;
    if (this.ownEvent !== event) {
      this.ownSpan = this.tracer.startSpan('keycard.decision', { kind: api.SpanKind.INTERNAL }, remoteParentOf(api, event));
      this.ownEvent = event;
    }
    return this.ownSpan;
  }

  /**
   * The MCP request of a call to an MCP endpoint: its JSON-RPC method and, for a `tools/call` of
   * a tool the app declares, the tool, both from the parsed body (never from `Mcp-Method` or
   * `Mcp-Name` headers, catalogue Q31).
   */
  private mcpRequestOf(event: DecisionEvent): McpRequestName | undefined {
    const { source } = event;
    if (source?.rules.mcp === undefined) return undefined;
    const body = (source.carrier as { body?: unknown }).body as { method?: unknown; params?: { name?: unknown } } | undefined;
    if (Array.isArray(body)) return { method: 'batch' };
    if (typeof body !== 'object' || body === null || typeof body.method !== 'string') return {};
    const tool = this.mcp.toolOf(body) === undefined ? undefined : (body.params!.name as string);
    return { method: body.method, tool };
  }
}
