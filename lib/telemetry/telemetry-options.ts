/**
 * Options of {@link KeycardTelemetryModule} (`nestjs-keycard/telemetry`). Every field is optional;
 * `{}` traces every decision and counts decisions without any per-agent attribute.
 * @publicApi
 */
export interface KeycardTelemetryOptions {
  /**
   * Decision attributes on the active span, or on a short `keycard.decision` span of their own
   * where no span is active (a gateway message, a microservice call without an instrumentation).
   * Default `true`.
   */
  readonly traces?: boolean;
  /** The decision metrics; `false` records none. Default `{}`. */
  readonly metrics?: false | KeycardMetricsOptions;
}

/**
 * How the decision metrics are labelled. Cardinality stays bounded whatever the callers do
 * (catalogue W8, Q41): the agent is not an attribute unless asked for, and then at most
 * `agentLimit` agents get series of their own.
 * @publicApi
 */
export interface KeycardMetricsOptions {
  /**
   * Adds `keycard.issuer` and `keycard.agent.id` to `keycard.decisions`, for verified calls.
   * Default `false`.
   */
  readonly agentAttribute?: boolean;
  /**
   * With `agentAttribute`: how many distinct agents (issuer, agent id) get their own series, in the
   * order first seen; every later one is counted as agent `_other`. Default 1 000; an integer ≥ 1.
   */
  readonly agentLimit?: number;
  /**
   * Records histogram `keycard.verification.duration` (s): the time from the module's first look at
   * a call to its decision. Default `false`: an SDK histogram record adds about 1 µs per decision
   * measured paired (up to 5 µs in isolation under load), which takes the module past its 3 µs
   * budget per decision, so an app asks for it; `keycard.decisions` costs one increment.
   */
  readonly verificationDuration?: boolean;
}

/** The options with their defaults, checked. */
export interface ResolvedTelemetryOptions {
  readonly traces: boolean;
  readonly metrics: false | { readonly agentAttribute: boolean; readonly agentLimit: number; readonly verificationDuration: boolean };
}

export const DEFAULT_AGENT_LIMIT = 1_000;

/**
 * `options` with defaults.
 * @throws TypeError when `metrics.agentLimit` is not an integer ≥ 1.
 */
export function resolveTelemetryOptions(options: KeycardTelemetryOptions = {}): ResolvedTelemetryOptions {
  const metrics = options.metrics ?? {};
  if (metrics === false) return { traces: options.traces ?? true, metrics: false };
  const agentLimit = metrics.agentLimit ?? DEFAULT_AGENT_LIMIT;
  if (!Number.isInteger(agentLimit) || agentLimit < 1) {
    throw new TypeError("KeycardTelemetryModule: 'metrics.agentLimit' must be an integer of at least 1");
  }
  return {
    traces: options.traces ?? true,
    metrics: { agentAttribute: metrics.agentAttribute ?? false, agentLimit, verificationDuration: metrics.verificationDuration ?? false },
  };
}
