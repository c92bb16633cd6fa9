/** The fewest slots the table starts with (4 KiB). */
const FIRST_SLOTS = 1024;
/** An empty slot: fingerprints are 30-bit, never negative. */
const EMPTY = -1;
/** Sight numbers are kept modulo 2^31: an age is their difference in that ring. */
const SIGHT_MASK = 0x7fffffff;

/**
 * The verified tokens seen once recently, so the verified-token cache keeps only tokens sent a
 * second time (issue 24: a per-action token is never stored). Nothing of a token is kept but a
 * 30-bit fingerprint of its signature, in a direct-mapped table of small integers: one slot per
 * fingerprint, read and written once per token, no allocation per token.
 *
 * The table grows by doubling as tokens come (so a large cache size costs memory only as tokens
 * come) up to the power of two at or above twice `capacity`, 8 bytes a slot: 256 KiB for the
 * default 10 000. A token is forgotten after `capacity` more first sights, or sooner when a later
 * one lands on its slot: of the last `capacity` tokens about three in four are remembered, of the
 * newest tenth of them nearly all (a forgotten token is cached one verification later). Before 2026-12-07 this was a `Set` and a ring of
 * exactly the last `capacity` fingerprints: three hash-table operations per token, each a cache
 * miss in a server (in-process, with the CPU caches flushed between tokens: ~700 ns per token
 * for the set and ring, ~200 ns for one slot).
 *
 * A fingerprint only decides whether a verified token is worth caching: two tokens with the same
 * fingerprint make the second one cached on its first verification, never admitted without one
 * (the cache compares the whole token text). Only tokens whose signature verified reach here, so
 * a flood of forged ones cannot push out the tokens that were seen.
 */
export class SeenOnce {
  /**
   * Two numbers per slot, side by side (one cache line): the fingerprint ({@link EMPTY} for none)
   * and the first sight it was seen at (modulo 2^31). Allocated at the first token (none with the
   * cache off).
   */
  private slots = new Int32Array(0);
  /** First sights so far (modulo 2^31): the table doubles each time they reach half its slots, until it is full size. */
  private sights = 0;
  /** The most slots the table grows to: the power of two at or above 2 × capacity. */
  private readonly maxSlots: number;

  constructor(private readonly capacity: number) {
    this.maxSlots = capacity <= 0 ? 0 : 2 ** Math.ceil(Math.log2(2 * capacity));
  }

  /**
   * True when the token of `fingerprint` (`fingerprintOf` in token-fingerprint.ts) was not seen
   * among the last `capacity` first sights (then it is remembered); false when it was (then it is
   * forgotten here: its next stop is the cache).
   */
  firstSight(fingerprint: number): boolean {
    if (this.maxSlots === 0) return true;
    if (this.slots.length < 2 * this.maxSlots && this.sights >= this.slots.length / 4) this.grow();
    const at = 2 * (fingerprint & (this.slots.length / 2 - 1));
    if (this.slots[at] === fingerprint && ((this.sights - this.slots[at + 1]) & SIGHT_MASK) <= this.capacity) {
      this.slots[at] = EMPTY;
      return false;
    }
    // The slot's token, if any, is forgotten: it waits for one more verification before it is cached.
    this.slots[at] = fingerprint;
    this.slots[at + 1] = this.sights;
    this.sights = (this.sights + 1) & SIGHT_MASK;
    return true;
  }

  /** Doubles the table (at least {@link FIRST_SLOTS} slots), each fingerprint moved to its slot in the larger one. */
  private grow(): void {
    const before = this.slots;
    const slots = Math.min(this.maxSlots, Math.max(FIRST_SLOTS, before.length));
    this.slots = new Int32Array(2 * slots).fill(EMPTY);
    const mask = slots - 1;
    // Distinct slots of the smaller table map to distinct slots here: nothing is lost.
    for (let at = 0; at < before.length; at += 2) {
      const fingerprint = before[at];
      if (fingerprint === EMPTY) continue;
      const to = 2 * (fingerprint & mask);
      this.slots[to] = fingerprint;
      this.slots[to + 1] = before[at + 1];
    }
  }
}
