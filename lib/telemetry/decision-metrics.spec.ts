/**
 * `keycard.decisions` with `metrics.agentAttribute`, read through a real SDK meter (a manual
 * reader): every exported series counts something, and an agent's claims are escaped as in spans.
 */
import { describe, expect, it } from '@jest/globals';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import type { DecisionEvent } from '../decision/decision-events.js';
import { KEYCARD_ATTRIBUTES as A } from './attribute-names.js';
import { DecisionMetrics } from './decision-metrics.js';

class Reader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

/** A final decision of the `http` door; `agent` makes it a verified agent's. */
function decision(type: 'admitted' | 'refused', agent?: { issuer: string; agentId: string }, reason?: 'insufficient_scope' | 'no_credentials'): DecisionEvent {
  // The verified agent (as the core hands it over, cached with its token) and the event's view of it.
  const verified = agent === undefined ? undefined : Object.freeze({ ...agent, clientId: agent.agentId, subject: 'user-1', scopes: [], claims: {} });
  const performedBy = verified === undefined ? undefined : { issuer: verified.issuer, agentId: verified.agentId, clientId: verified.clientId };
  // `started` set: the histogram (when on) records it too, by decision, reason and door.
  return { type, reason, status: type === 'admitted' ? 200 : 403, call: { kind: 'http', name: 'GET /', method: 'GET', route: '/' }, performedBy, agent: verified, final: true, started: performance.now() } as DecisionEvent;
}

async function seriesOf(record: (metrics: DecisionMetrics) => void, agentLimit = 10, verificationDuration = false): Promise<{ attributes: Record<string, unknown>; value: number }[]> {
  const reader = new Reader();
  const meter = new MeterProvider({ readers: [reader] }).getMeter('test');
  record(new DecisionMetrics(meter, { agentAttribute: true, agentLimit, verificationDuration }));
  const { resourceMetrics } = await reader.collect();
  const points = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'keycard.decisions')?.dataPoints ?? [];
  return points.map((p) => ({ attributes: p.attributes, value: p.value as number }));
}

describe('DecisionMetrics with agentAttribute', () => {
  it('W8 exports only series that counted: an agent\'s decision counts in its agent series, with no zero-valued series beside it (the duration histogram on too); an anonymous refusal in the series without agent', async () => {
    const agent = { issuer: 'https://zone.example', agentId: 'app-7' };
    const points = await seriesOf((metrics) => {
      metrics.record(decision('admitted', agent), 'http');
      metrics.record(decision('refused', agent, 'insufficient_scope'), 'http');
      metrics.record(decision('refused', undefined, 'no_credentials'), 'http');
    }, 10, true);
    expect(points.filter((p) => p.value === 0)).toEqual([]);
    expect(points.map((p) => [p.attributes[A.DECISION], p.attributes[A.REASON], p.attributes[A.AGENT_ID], p.value])).toEqual([
      ['admitted', undefined, 'app-7', 1],
      ['refused', 'insufficient_scope', 'app-7', 1],
      ['refused', 'no_credentials', undefined, 1],
    ]);
  });

  it('W8 past agentLimit, only _other grows; no zero-valued series either', async () => {
    const points = await seriesOf((metrics) => {
      for (const agentId of ['a', 'b', 'c']) metrics.record(decision('admitted', { issuer: 'https://zone.example', agentId }), 'http');
    }, 1);
    expect(points.map((p) => [p.attributes[A.AGENT_ID], p.value])).toEqual([['a', 1], ['_other', 2]]);
  });

  it('W9 an agent id and issuer with control characters and bidi overrides are escaped in metric attributes, as in spans', async () => {
    const points = await seriesOf((metrics) => metrics.record(decision('admitted', { issuer: 'https://zone\n.example', agentId: 'app-\u202e7' }), 'http'));
    expect(points.map((p) => [p.attributes[A.ISSUER], p.attributes[A.AGENT_ID]])).toEqual([['https://zone\\n.example', 'app-\\u202e7']]);
  });
});
