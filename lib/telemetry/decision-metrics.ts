import type { Attributes, Histogram, Meter } from '@opentelemetry/api';
import type { DecisionEvent, PerformedBy } from '../decision/decision-events.js';
import { logSafe } from '../logging/log-safe.js';
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
  /** Series by decision, reason, door (and agent): bounded by the vocabularies and `agentLimit`. Only these are observed. */
  readonly series: Map<string, Series>;
  /** Attribute sets by decision, reason and door, for the histogram and the series without agent. */
  readonly bases: Map<string, Attributes>;
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
  totals = { series, bases: new Map(), agents: new Map(), duration };
  totalsByMeter.set(meter, totals);
  return totals;
}

/**
 * The decision metrics (catalogue W8): `keycard.decisions` by `keycard.decision`, `keycard.reason`
 * and `keycard.call.kind` (and the agent, when enabled, at most `agentLimit` of them plus
 * `_other`); histogram `keycard.verification.duration` (s) by decision, reason and door. Only final
 * events count, so a call a later judge rules on (the throttler) counts once.
 *
 * `keycard.decisions` counts what the audit log writes a record for: one decision per call, and
 * one per HTTP request for the calls that share it (the fields of a GraphQL operation over HTTP,
 * the operations of a batch): the request's first refusal, else its admission, counted when the
 * response is finished. So 40 refused aliases count one refusal (the decision-core issue, item 4),
 * not 40. The histogram times every decision (each field's).
 *
 * `keycard.decisions` is an asynchronous (observable) counter over totals kept here: a decision
 * costs one increment of a number, and the SDK reads the totals when it collects (a synchronous
 * counter's `add` hashes the attribute set on every call). Readers see a monotonic sum either way.
 * With `agentAttribute`, a verified agent's decision counts only in its agent's series (or
 * `_other`): every exported series has counted something.
 */
export class DecisionMetrics {
  private readonly totals: Totals;
  /** The decision each HTTP request shared by several calls will count when it is answered. */
  private readonly requests = new WeakMap<object, Held>();

  constructor(
    meter: Meter,
    private readonly options: DecisionMetricsOptions,
  ) {
    this.totals = totalsOf(meter);
  }

  /** Records `event`; `kind` is the door as the span names it (`mcp` for an MCP endpoint). */
  record(event: DecisionEvent, kind: string): void {
    if (!event.final) return;
    if (!this.heldForItsRequest(event, kind)) this.count(event, kind);
    if (!this.options.verificationDuration) return;
    const { started } = event;
    if (started > 0 && event.public !== true) this.totals.duration.record((performance.now() - started) / 1000, this.attributesOf(event, kind));
  }

  private count(event: DecisionEvent, kind: string): void {
    const series = this.options.agentAttribute && event.performedBy !== undefined ? this.agentSeriesOf(event, kind, event.performedBy) : this.seriesOf(event, kind);
    series.value++;
  }

  /**
   * True when `event` is one of several calls sharing an HTTP request (GraphQL fields): the
   * request counts once, as its audit record, when its response is finished.
   */
  private heldForItsRequest(event: DecisionEvent, kind: string): boolean {
    const call = event.source;
    if (call === undefined || !call.kind.sharedCarrier) return false;
    const response = call.kind.httpResponse(call.context, call.carrier);
    if (response === undefined) return false;
    const held = this.requests.get(call.carrier);
    if (held === undefined) {
      const first: Held = { event, kind };
      this.requests.set(call.carrier, first);
      response.once('finish', () => this.count(first.event, first.kind));
    } else if (held.event.status < 400 && event.status >= 400) {
      held.event = event;
      held.kind = kind;
    }
    return true;
  }

  /** The series of `event` without an agent (created on first use). */
  private seriesOf(event: DecisionEvent, kind: string): Series {
    return this.series(`${event.type} ${event.reason ?? ''} ${kind}`, () => this.attributesOf(event, kind));
  }

  /** The attributes of `event` without an agent, made once per decision, reason and door (the histogram's, the series'). */
  private attributesOf(event: DecisionEvent, kind: string): Attributes {
    const key = `${event.type} ${event.reason ?? ''} ${kind}`;
    const { bases } = this.totals;
    let attributes = bases.get(key);
    if (attributes === undefined) {
      attributes = baseAttributes(event, kind);
      bases.set(key, attributes);
    }
    return attributes;
  }

  private series(key: string, attributes: () => Attributes): Series {
    let series = this.totals.series.get(key);
    if (series === undefined) {
      series = { attributes: attributes(), value: 0 };
      this.totals.series.set(key, series);
    }
    return series;
  }

  /** The series of `event` for its verified agent, or for `_other` once {@link DecisionMetricsOptions.agentLimit} agents have theirs. */
  private agentSeriesOf(event: DecisionEvent, kind: string, performedBy: PerformedBy): Series {
    const key = JSON.stringify([performedBy.issuer, performedBy.agentId]);
    const { agents } = this.totals;
    let agent = agents.get(key);
    if (agent === undefined && agents.size < this.options.agentLimit) {
      agent = { issuer: logSafe(performedBy.issuer), agentId: logSafe(performedBy.agentId) };
      agents.set(key, agent);
    }
    const seen = agent;
    const baseKey = `${event.type} ${event.reason ?? ''} ${kind}`;
    if (seen === undefined) return this.series(`${baseKey} ${OTHER_AGENT}`, () => ({ ...this.attributesOf(event, kind), [A.AGENT_ID]: OTHER_AGENT }));
    return this.series(`${baseKey} ${key}`, () => ({ ...this.attributesOf(event, kind), [A.ISSUER]: seen.issuer, [A.AGENT_ID]: seen.agentId }));
  }
}

/** The decision a shared HTTP request counts: its first refusal, else its first admission. */
interface Held {
  event: DecisionEvent;
  kind: string;
}

function baseAttributes(event: DecisionEvent, kind: string): Attributes {
  const attributes: Attributes = { [A.DECISION]: event.type, [A.CALL_KIND]: kind };
  if (event.reason !== undefined) attributes[A.REASON] = event.reason;
  return attributes;
}
