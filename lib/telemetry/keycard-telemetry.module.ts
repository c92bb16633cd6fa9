import { type DynamicModule, Module } from '@nestjs/common';
import { KEYCARD_TELEMETRY_OPTIONS, KeycardTelemetry } from './keycard-telemetry.js';
import { type KeycardTelemetryOptions, resolveTelemetryOptions } from './telemetry-options.js';

/**
 * Decision events in OpenTelemetry: import it beside `KeycardModule`. It loads `@opentelemetry/api`
 * (an optional peer dependency) when the app starts; without it, it logs one warning and records
 * nothing. Register your OpenTelemetry SDK (tracer and meter providers) before the app is created,
 * as for any instrumentation: a meter taken before the SDK is registered stays a no-op.
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
      providers: [{ provide: KEYCARD_TELEMETRY_OPTIONS, useValue: resolveTelemetryOptions(options) }, KeycardTelemetry],
      exports: [KeycardTelemetry],
    };
  }
}
