import { type DynamicModule, Module } from '@nestjs/common';
import { KEYCARD_TRACE_CONTEXT } from '../logging/trace-context.js';
import { KEYCARD_TELEMETRY_OPTIONS, KeycardTelemetry } from './keycard-telemetry.js';
import { type KeycardTelemetryOptions, resolveTelemetryOptions } from './telemetry-options.js';

/**
 * Decision events in OpenTelemetry: import it beside `KeycardModule`. It loads `@opentelemetry/api`
 * (an optional peer dependency) when the app starts; without it, it logs one warning and records
 * nothing. Register your OpenTelemetry SDK (tracer and meter providers) before the app is created,
 * as for any instrumentation: a meter taken before the SDK is registered stays a no-op. Global, so
 * the audit log finds the trace and span ids it adds to its records (`traceId`, `spanId`).
 *
 * @example
 * ```ts
 * @Module({ imports: [KeycardModule.forRoot({ zoneUrl, resource }), KeycardTelemetryModule.forRoot()] })
 * export class AppModule {}
 * ```
 * @throws TypeError from `forRoot` for an invalid `metrics.agentLimit`.
 * @publicApi
 */
@Module({})
export class KeycardTelemetryModule {
  static forRoot(options: KeycardTelemetryOptions = {}): DynamicModule {
    return {
      module: KeycardTelemetryModule,
      global: true,
      providers: [
        { provide: KEYCARD_TELEMETRY_OPTIONS, useValue: resolveTelemetryOptions(options) },
        KeycardTelemetry,
        { provide: KEYCARD_TRACE_CONTEXT, useExisting: KeycardTelemetry },
      ],
      exports: [KeycardTelemetry, KEYCARD_TRACE_CONTEXT],
    };
  }
}
