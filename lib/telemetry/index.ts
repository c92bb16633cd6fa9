export { KeycardTelemetryModule } from './keycard-telemetry.module.js';
export { KeycardTelemetry, INSTRUMENTATION_SCOPE } from './keycard-telemetry.js';
export { KEYCARD_ATTRIBUTES, OTHER_AGENT } from './attribute-names.js';
export type { KeycardTelemetryOptions, KeycardMetricsOptions } from './telemetry-options.js';
