import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api';
import type { DecisionEvent } from '../decision/decision-events.js';
import { logCapped } from '../logging/log-safe.js';
import { KEYCARD_ATTRIBUTES as A, OTHER_AGENT } from './attribute-names.js';

/**
 * Bucket boundaries of `keycard.verification.duration`, in seconds: a cache hit takes microseconds,
 * a first verification milliseconds, a JWKS fetch up to the 5 s timeout.
 */
const DURATION_BUCKETS = [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** What {@link DecisionMetrics} records. */
export interface DecisionMetricsOptions {
  readonly agentAttribute: boolean;
  readonly agentLimit: number;
}

/**
 * The decision metrics (catalogue W8): counter `keycard.decisions` by `keycard.decision`,
 * `keycard.reason` and `keycard.call.kind` (and the agent, when enabled, at most `agentLimit` of
 * them plus `_other`); histogram `keycard.verification.duration` (s) by decision and door. Only
 * final events count, so a call a later judge rules on (the throttler) counts once.
 */
export class DecisionMetrics {
  private readonly decisions: Counter;
  private readonly duration: Histogram;
  /** Attribute sets without an agent, by decision, reason and door: built once, not per call. */
  private readonly shared = new Map<string, Attributes>();
  /** Agents with a series of their own: `[issuer, agentId]` JSON → capped values. */
  private readonly agents = new Map<string, { issuer: string; agentId: string }>();

  constructor(
    meter: Meter,
    private readonly options: DecisionMetricsOptions,
  ) {
    this.decisions = meter.createCounter('keycard.decisions', { description: 'Decisions of the Keycard guard, by outcome, reason and door', unit: '{decision}' });
    this.duration = meter.createHistogram('keycard.verification.duration', {
      description: 'Time from the first look at a call to its decision (token verification, validators, scope policy)',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
  }

  /** Records `event`; `kind` is the door as the span names it (`mcp` for an MCP endpoint). */
  record(event: DecisionEvent, kind: string): void {
    if (!event.final) return;
    const base = this.attributesOf(event, kind);
    this.decisions.add(1, this.options.agentAttribute ? this.withAgent(base, event) : base);
    const { started } = event.source;
    if (started > 0 && event.public !== true) this.duration.record((performance.now() - started) / 1000, base);
  }

  private attributesOf(event: DecisionEvent, kind: string): Attributes {
    const key = `${event.type} ${event.reason ?? ''} ${kind}`;
    let attributes = this.shared.get(key);
    if (attributes === undefined) {
      attributes = { [A.DECISION]: event.type, [A.CALL_KIND]: kind };
      if (event.reason !== undefined) attributes[A.REASON] = event.reason;
      this.shared.set(key, attributes);
    }
    return attributes;
  }

  /** `base` with the verified agent, or `_other` once {@link DecisionMetricsOptions.agentLimit} agents have series. */
  private withAgent(base: Attributes, event: DecisionEvent): Attributes {
    const { performedBy } = event;
    if (performedBy === undefined) return base;
    const key = JSON.stringify([performedBy.issuer, performedBy.agentId]);
    let agent = this.agents.get(key);
    if (agent === undefined && this.agents.size < this.options.agentLimit) {
      agent = { issuer: logCapped(performedBy.issuer), agentId: logCapped(performedBy.agentId) };
      this.agents.set(key, agent);
    }
    if (agent === undefined) return { ...base, [A.AGENT_ID]: OTHER_AGENT };
    return { ...base, [A.ISSUER]: agent.issuer, [A.AGENT_ID]: agent.agentId };
  }
}
