import type { Attributes, Histogram, Meter } from '@opentelemetry/api';
import type { DecisionEvent } from '../decision/decision-events.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { logSafe } from '../logging/log-safe.js';
import { onceResponseEnds } from '../logging/response-ended.js';
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

/** One decision, reason and door: its attribute set (the histogram's) and its series. */
interface Outcome {
  readonly attributes: Attributes;
  /** Without an agent (every decision without `agentAttribute`; anonymous ones with it). */
  plain?: Series;
  /** Agent `_other`. */
  other?: Series;
}

/** An agent with series of its own: its escaped `iss` and agent id, and its series by outcome. */
interface AgentSeries {
  readonly issuer: string;
  readonly agentId: string;
  readonly series: Map<Outcome, Series>;
}

/**
 * The totals of one meter's `keycard.decisions`, shared by every {@link DecisionMetrics} of that
 * meter (several apps in one process, an app created again): an observable counter reports one
 * value per attribute set, so two apps must add to the same total rather than observe two.
 * Looked up by nested maps, not by a key built per decision (a refused message burst builds none).
 */
interface Totals {
  /** Every series, bounded by the vocabularies and `agentLimit`; the counter reports these. */
  readonly series: Series[];
  /** Outcomes by decision, reason (`''` for none) and door. */
  readonly outcomes: Map<string, Map<string, Map<string, Outcome>>>;
  /** Agents with series of their own, by `[issuer, agentId]` JSON. */
  readonly agents: Map<string, AgentSeries>;
  readonly duration: Histogram;
}

const totalsByMeter = new WeakMap<Meter, Totals>();

function totalsOf(meter: Meter): Totals {
  let totals = totalsByMeter.get(meter);
  if (totals !== undefined) return totals;
  const series: Series[] = [];
  const decisions = meter.createObservableCounter('keycard.decisions', { description: 'Decisions of the Keycard guard, by outcome, reason and door', unit: '{decision}' });
  decisions.addCallback((result) => {
    for (const { attributes, value } of series) result.observe(value, attributes);
  });
  const duration = meter.createHistogram('keycard.verification.duration', {
    description: 'Time from the first look at a call to its decision (token verification, validators, scope policy)',
    unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  totals = { series, outcomes: new Map(), agents: new Map(), duration };
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
  /** Agents already looked up: their series, or {@link OTHER}. */
  private readonly seen = new WeakMap<AgentContext, AgentSeries | typeof OTHER>();

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
    if (started > 0 && event.public !== true) this.totals.duration.record((performance.now() - started) / 1000, this.outcomeOf(event, kind).attributes);
  }

  private count(event: DecisionEvent, kind: string): void {
    const outcome = this.outcomeOf(event, kind);
    const agent = this.options.agentAttribute ? event.agent : undefined;
    if (agent === undefined) {
      (outcome.plain ??= this.newSeries(outcome.attributes)).value++;
      return;
    }
    const own = this.agentOf(agent);
    if (own === undefined) {
      (outcome.other ??= this.newSeries({ ...outcome.attributes, [A.AGENT_ID]: OTHER_AGENT })).value++;
      return;
    }
    let series = own.series.get(outcome);
    if (series === undefined) {
      series = this.newSeries({ ...outcome.attributes, [A.ISSUER]: own.issuer, [A.AGENT_ID]: own.agentId });
      own.series.set(outcome, series);
    }
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
      onceResponseEnds(response, () => this.count(first.event, first.kind));
    } else if (held.event.status < 400 && event.status >= 400) {
      held.event = event;
      held.kind = kind;
    }
    return true;
  }

  /** The outcome of `event` at door `kind` (created on first use). */
  private outcomeOf(event: DecisionEvent, kind: string): Outcome {
    const { outcomes } = this.totals;
    const reason = event.reason ?? '';
    let byReason = outcomes.get(event.type);
    if (byReason === undefined) outcomes.set(event.type, (byReason = new Map()));
    let byKind = byReason.get(reason);
    if (byKind === undefined) byReason.set(reason, (byKind = new Map()));
    let outcome = byKind.get(kind);
    if (outcome === undefined) byKind.set(kind, (outcome = { attributes: baseAttributes(event, kind) }));
    return outcome;
  }

  private newSeries(attributes: Attributes): Series {
    const series = { attributes, value: 0 };
    this.totals.series.push(series);
    return series;
  }

  /**
   * The verified agent's own series, or `undefined` for `_other` once {@link DecisionMetricsOptions.agentLimit}
   * agents have theirs; by agent context (a token's agent is cached with the token), then by
   * issuer and agent id.
   */
  private agentOf(agent: AgentContext): AgentSeries | undefined {
    const seen = this.seen.get(agent);
    if (seen !== undefined) return seen === OTHER ? undefined : seen;
    const key = JSON.stringify([agent.issuer, agent.agentId]);
    const { agents } = this.totals;
    let own = agents.get(key);
    if (own === undefined && agents.size < this.options.agentLimit) {
      own = { issuer: logSafe(agent.issuer), agentId: logSafe(agent.agentId), series: new Map() };
      agents.set(key, own);
    }
    this.seen.set(agent, own ?? OTHER);
    return own;
  }
}

/** The mark of an agent counted as `_other`. */
const OTHER = Symbol('other');

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
