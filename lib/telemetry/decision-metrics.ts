import type { Attributes, Histogram, Meter } from '@opentelemetry/api';
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
  /** Records `keycard.verification.duration` (opt-in: see `KeycardMetricsOptions.verificationDuration`). */
  readonly verificationDuration: boolean;
}

/** One series of `keycard.decisions`: its attributes and its total so far. */
interface Series {
  readonly attributes: Attributes;
  value: number;
}

/**
 * The totals of one meter's `keycard.decisions`, shared by every {@link DecisionMetrics} of that
 * meter (several apps in one process, an app created again): an observable counter reports one
 * value per attribute set, so two apps must add to the same total rather than observe two.
 */
interface Totals {
  /** Series by decision, reason, door (and agent): bounded by the vocabularies and `agentLimit`. */
  readonly series: Map<string, Series>;
  /** Agents with series of their own: `[issuer, agentId]` JSON → their capped values. */
  readonly agents: Map<string, { issuer: string; agentId: string }>;
  readonly duration: Histogram;
}

const totalsByMeter = new WeakMap<Meter, Totals>();

function totalsOf(meter: Meter): Totals {
  let totals = totalsByMeter.get(meter);
  if (totals !== undefined) return totals;
  const series = new Map<string, Series>();
  const decisions = meter.createObservableCounter('keycard.decisions', { description: 'Decisions of the Keycard guard, by outcome, reason and door', unit: '{decision}' });
  decisions.addCallback((result) => {
    for (const { attributes, value } of series.values()) result.observe(value, attributes);
  });
  const duration = meter.createHistogram('keycard.verification.duration', {
    description: 'Time from the first look at a call to its decision (token verification, validators, scope policy)',
    unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  totals = { series, agents: new Map(), duration };
  totalsByMeter.set(meter, totals);
  return totals;
}

/**
 * The decision metrics (catalogue W8): `keycard.decisions` by `keycard.decision`, `keycard.reason`
 * and `keycard.call.kind` (and the agent, when enabled, at most `agentLimit` of them plus
 * `_other`); histogram `keycard.verification.duration` (s) by decision, reason and door. Only final
 * events count, so a call a later judge rules on (the throttler) counts once.
 *
 * `keycard.decisions` is an asynchronous (observable) counter over totals kept here: a decision
 * costs one increment of a number, and the SDK reads the totals when it collects (a synchronous
 * counter's `add` hashes the attribute set on every call). Readers see a monotonic sum either way.
 */
export class DecisionMetrics {
  private readonly totals: Totals;

  constructor(
    meter: Meter,
    private readonly options: DecisionMetricsOptions,
  ) {
    this.totals = totalsOf(meter);
  }

  /** Records `event`; `kind` is the door as the span names it (`mcp` for an MCP endpoint). */
  record(event: DecisionEvent, kind: string): void {
    if (!event.final) return;
    const base = this.seriesOf(`${event.type} ${event.reason ?? ''} ${kind}`, () => baseAttributes(event, kind));
    const counted = this.options.agentAttribute ? this.withAgent(base, event) : base;
    counted.value++;
    if (!this.options.verificationDuration) return;
    const { started } = event;
    if (started > 0 && event.public !== true) this.totals.duration.record((performance.now() - started) / 1000, base.attributes);
  }

  private seriesOf(key: string, attributes: () => Attributes): Series {
    let series = this.totals.series.get(key);
    if (series === undefined) {
      series = { attributes: attributes(), value: 0 };
      this.totals.series.set(key, series);
    }
    return series;
  }

  /** The series of `base` for the verified agent, or for `_other` once {@link DecisionMetricsOptions.agentLimit} agents have theirs. */
  private withAgent(base: Series, event: DecisionEvent): Series {
    const { performedBy } = event;
    if (performedBy === undefined) return base;
    const key = JSON.stringify([performedBy.issuer, performedBy.agentId]);
    const { agents } = this.totals;
    let agent = agents.get(key);
    if (agent === undefined && agents.size < this.options.agentLimit) {
      agent = { issuer: logCapped(performedBy.issuer), agentId: logCapped(performedBy.agentId) };
      agents.set(key, agent);
    }
    const seen = agent;
    const baseKey = `${event.type} ${event.reason ?? ''} ${String(base.attributes[A.CALL_KIND])}`;
    if (seen === undefined) return this.seriesOf(`${baseKey} ${OTHER_AGENT}`, () => ({ ...base.attributes, [A.AGENT_ID]: OTHER_AGENT }));
    return this.seriesOf(`${baseKey} ${key}`, () => ({ ...base.attributes, [A.ISSUER]: seen.issuer, [A.AGENT_ID]: seen.agentId }));
  }
}

function baseAttributes(event: DecisionEvent, kind: string): Attributes {
  const attributes: Attributes = { [A.DECISION]: event.type, [A.CALL_KIND]: kind };
  if (event.reason !== undefined) attributes[A.REASON] = event.reason;
  return attributes;
}
