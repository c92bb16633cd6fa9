/**
 * A real OpenTelemetry SDK for the telemetry tests: a tracer provider with an in-memory span
 * exporter, a meter provider read on demand, the AsyncLocalStorage context manager and the W3C
 * trace-context propagator, registered globally as an app registers its SDK before it starts.
 * `serverSpans` opens one SERVER span per HTTP request, from its `traceparent`, as the HTTP
 * instrumentation does (status left to the response, unset for 4xx).
 */
import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { INestApplication } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface TestSdk {
  readonly spans: InMemorySpanExporter;
  /** Every data point exported so far, cumulative. */
  collect(): Promise<ResourceMetrics>;
  /** Everything the SDK holds (spans, metric points), as one string to scan for secrets. */
  everything(): Promise<string>;
}

let sdk: TestSdk | undefined;

/** Registers the SDK once per test file (the API's globals refuse a second registration). */
export function startTestSdk(): TestSdk {
  if (sdk !== undefined) return sdk;
  const spans = new InMemorySpanExporter();
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  const collect = async () => (await reader.collect()).resourceMetrics;
  const all: unknown[] = [];
  sdk = {
    spans,
    collect,
    async everything() {
      all.push(...spans.getFinishedSpans().map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })));
      return JSON.stringify([all, await collect()]);
    },
  };
  return sdk;
}

/** The points of metric `name`: attributes and value (a sum, or a histogram's count). */
export function points(resource: ResourceMetrics, name: string): { attributes: Record<string, unknown>; value: number }[] {
  const metric = resource.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []).map((p) => ({
    attributes: p.attributes,
    value: typeof p.value === 'number' ? p.value : (p.value as { count: number }).count,
  }));
}

/** One SERVER span per request, active while the app handles it, ended when the response finishes. */
export function serverSpans(app: INestApplication): void {
  const tracer = trace.getTracer('test-http-server');
  const open = (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer.startSpan(`${req.method} server`, { kind: SpanKind.SERVER }, parent);
    res.once('finish', () => {
      span.setAttribute('http.response.status_code', res.statusCode);
      span.end();
    });
    context.with(trace.setSpan(parent, span), next);
  };
  const adapter = app.getHttpAdapter();
  if (adapter.getType() === 'fastify') {
    type Hook = (req: { raw: IncomingMessage }, reply: { raw: ServerResponse }, done: () => void) => void;
    const fastify = adapter.getInstance() as { addHook(name: string, hook: Hook): void };
    fastify.addHook('onRequest', (req: { raw: IncomingMessage }, reply: { raw: ServerResponse }, done: () => void) => open(req.raw, reply.raw, done));
  } else {
    app.use(open);
  }
}

/** The finished spans named `name` (or SERVER spans when `name` is omitted), oldest first. */
export function finished(sdkSpans: InMemorySpanExporter, name?: string): ReadableSpan[] {
  return sdkSpans.getFinishedSpans().filter((s) => (name === undefined ? s.kind === SpanKind.SERVER : s.name === name));
}

/**
 * What a telemetry suite must find nowhere (W9): every token it used (with its signature segment
 * on its own) and every secret, and the log lines of its apps to scan for them.
 */
export function secretsToScan(): { secrets: string[]; logs: string[]; remember(token: string): string } {
  const secrets: string[] = [];
  return {
    secrets,
    logs: [],
    remember(token: string) {
      secrets.push(token, token.split('.')[2]!);
      return token;
    },
  };
}
