import { describe, expect, it } from '@jest/globals';
import { StoreOutage } from './store-outage.js';

describe('StoreOutage (issue 25: a Redis outage costs one deadline per back-off window)', () => {
  it('asks freely while the store answers; after a failure not at all for the back-off, then one call at a time', () => {
    let now = 0;
    const outage = new StoreOutage(1_000, () => now);
    expect([outage.mayAsk(), outage.mayAsk()]).toEqual([true, true]);
    expect(outage.answered()).toBe(false);
    expect(outage.failed()).toBe(true); // the outage starts: the caller logs it
    now = 999;
    expect(outage.mayAsk()).toBe(false);
    now = 1_000;
    expect(outage.mayAsk()).toBe(true); // one probe…
    expect(outage.mayAsk()).toBe(false); // …and nobody else while it runs
    expect(outage.failed()).toBe(false); // still the same outage: not logged again
    now = 1_500;
    expect(outage.mayAsk()).toBe(false);
    now = 2_000;
    expect(outage.mayAsk()).toBe(true);
    expect(outage.answered()).toBe(true); // recovered: the caller logs it
    expect([outage.mayAsk(), outage.mayAsk()]).toEqual([true, true]);
  });
});
