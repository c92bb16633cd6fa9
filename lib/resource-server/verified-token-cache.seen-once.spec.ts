import { describe, expect, it } from '@jest/globals';
import { SeenOnce } from './verified-token-cache.seen-once.js';
import { fingerprintOf } from './token-fingerprint.js';

/** The fingerprint of a token-shaped text whose signature's last characters (what the fingerprint reads) carry `n`. */
const token = (n: number) => fingerprintOf(`header.payload.signature${String(n).padStart(9, '0')}Q`);

describe('SeenOnce (the verified-token cache keeps a token from its second verification on)', () => {
  it('a first sight is remembered, a second one is not a first sight, a third is one again', () => {
    const seen = new SeenOnce(10);
    expect(seen.firstSight(token(1))).toBe(true);
    expect(seen.firstSight(token(1))).toBe(false);
    expect(seen.firstSight(token(1))).toBe(true);
  });

  it('holds `capacity` tokens across the growth of its ring, and forgets the oldest first', () => {
    const capacity = 3000;
    const seen = new SeenOnce(capacity);
    for (let n = 0; n < capacity; n++) expect(seen.firstSight(token(n))).toBe(true);
    for (let n = 0; n < capacity; n += 97) expect(seen.firstSight(token(n))).toBe(false);
    const full = new SeenOnce(capacity);
    for (let n = 0; n <= capacity; n++) full.firstSight(token(n));
    expect(full.firstSight(token(capacity))).toBe(false);
    expect(full.firstSight(token(0))).toBe(true); // pushed out by the token after the capacity (and now remembered, pushing out token 1)
    expect(full.firstSight(token(2))).toBe(false);
    expect(full.firstSight(token(1))).toBe(true);
  });

  it('with a capacity of 0 nothing is remembered', () => {
    const seen = new SeenOnce(0);
    expect(seen.firstSight(token(1))).toBe(true);
    expect(seen.firstSight(token(1))).toBe(true);
  });
});
