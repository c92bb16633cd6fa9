import { describe, expect, it } from '@jest/globals';
import { traceIdOfHeaders } from './decision-event.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe('traceIdOfHeaders (W3C Trace Context §3.2)', () => {
  it('reads the trace id of a valid version-00 traceparent', () => {
    expect(traceIdOfHeaders({ traceparent: `00-${TRACE}-${PARENT}-01` })).toBe(TRACE);
  });

  it.each([
    ['version ff (§3.2.2.1: invalid)', `ff-${TRACE}-${PARENT}-01`],
    ['an all-zero parent id (§3.2.2.3: invalid)', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['an all-zero trace id (§3.2.2.3: invalid)', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['upper-case hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['bad flags', `00-${TRACE}-${PARENT}-zz`],
  ])('ignores %s', (_why, traceparent) => {
    expect(traceIdOfHeaders({ traceparent })).toBeUndefined();
  });

  it('ignores a repeated header', () => {
    expect(traceIdOfHeaders({ traceparent: [`00-${TRACE}-${PARENT}-01`, `00-${TRACE}-${PARENT}-01`] as unknown as string })).toBeUndefined();
  });
});
