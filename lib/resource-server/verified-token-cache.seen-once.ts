/** The slots the table starts with (8 KiB), or its full size where that is fewer. */
const FIRST_SLOTS = 1024;
/**
 * Slots in a bucket, the slots a fingerprint may take: 8 slots of 8 bytes, 64 bytes (a cache
 * line's size). The oldest token of a bucket is pushed out only when 8 still remembered share it.
 */
const WAYS = 8;
/** An empty slot: fingerprints are 30-bit, never negative. */
const EMPTY = -1;
/** Sight numbers are kept modulo 2^31: an age is their difference in that ring. */
const SIGHT_MASK = 0x7fffffff;

/**
 * The verified tokens seen once recently, so the verified-token cache keeps only tokens sent a
 * second time (issue 24: a per-action token is never stored). Nothing of a token is kept but a
 * 30-bit fingerprint of its signature, in a table of small integers: one bucket of 8 slots (64
 * bytes) per fingerprint, read and written once per token, no allocation per token.
 *
 * The table grows by doubling as tokens come (so a large cache size costs memory only as tokens
 * come), each time first sights reach a quarter of its slots, up to the power of two at or above
 * four times `capacity` (at least one bucket), 8 bytes a slot: 512 KiB for the default 10 000,
 * 512 MiB for the largest (2^24). So buckets hold 2 tokens on average, and one holds more than 8
 * rarely. A token is forgotten after `capacity` more first sights, or sooner when 8 later tokens
 * still remembered land on its bucket (the oldest of the bucket goes): of a pool of 10 000 tokens
 * of random signatures sent twice in turn, 0–12 (a forgotten token is cached one verification
 * later). Before 2026-12-07 this was a `Set` and a ring of exactly the last `capacity`
 * fingerprints: three hash-table operations per token, each a cache miss in a server (in-process,
 * with the CPU caches flushed between tokens: 800–900 ns per token for the set and ring, 350–450
 * ns for a bucket). A first table of one slot per fingerprint forgot 4 058 of those 10 000 tokens
 * (`npm run bench` warms its 10k pool rows so and expects them all cached).
 *
 * A fingerprint only decides whether a verified token is worth caching: two tokens with the same
 * fingerprint make the second one cached on its first verification, never admitted without one
 * (the cache compares the whole token text). Only tokens whose signature verified reach here, so
 * a flood of forged ones cannot push out the tokens that were seen.
 */
export class SeenOnce {
  /**
   * Two numbers per slot, side by side, {@link WAYS} slots a bucket: the fingerprint
   * ({@link EMPTY} for none) and the first sight it was seen at (modulo 2^31). Allocated at the
   * first token (none with the cache off).
   */
  private slots = new Int32Array(0);
  /** First sights so far (modulo 2^31): the table doubles each time they reach a quarter of its slots, until it is full size. */
  private sights = 0;
  /** The most slots the table grows to: the power of two at or above 4 × capacity, at least one bucket. */
  private readonly maxSlots: number;

  constructor(private readonly capacity: number) {
    this.maxSlots = capacity <= 0 ? 0 : Math.max(WAYS, 2 ** Math.ceil(Math.log2(4 * capacity)));
  }

  /**
   * True when the token of `fingerprint` (`fingerprintOf` in token-fingerprint.ts) was not seen
   * among the last `capacity` first sights, or was pushed out of its full bucket since (then it is
   * remembered); false when it was (then it is forgotten here: its next stop is the cache).
   */
  firstSight(fingerprint: number): boolean {
    if (this.maxSlots === 0) return true;
    if (this.slots.length < 2 * this.maxSlots && this.sights >= this.slots.length / 8) this.grow();
    const bucket = 2 * WAYS * (fingerprint & (this.slots.length / (2 * WAYS) - 1));
    // The slot to write if the fingerprint is not there: an empty one or one whose token is older
    // than `capacity` sights (forgotten already), else the oldest.
    let victim = bucket;
    let victimAge = -1;
    for (let at = bucket; at < bucket + 2 * WAYS; at += 2) {
      const held = this.slots[at];
      const age = held === EMPTY ? SIGHT_MASK : (this.sights - this.slots[at + 1]) & SIGHT_MASK;
      if (held === fingerprint && age <= this.capacity) {
        this.slots[at] = EMPTY;
        return false;
      }
      if (age > victimAge) {
        victim = at;
        victimAge = age;
      }
    }
    this.slots[victim] = fingerprint;
    this.slots[victim + 1] = this.sights;
    this.sights = (this.sights + 1) & SIGHT_MASK;
    return true;
  }

  /** Doubles the table (at least {@link FIRST_SLOTS} slots), each fingerprint moved to its bucket in the larger one. */
  private grow(): void {
    const before = this.slots;
    const slots = Math.min(this.maxSlots, Math.max(FIRST_SLOTS, before.length));
    this.slots = new Int32Array(2 * slots).fill(EMPTY);
    const mask = slots / WAYS - 1;
    // A bucket of the smaller table splits into two here, so its at most WAYS fingerprints fit:
    // nothing is lost.
    for (let at = 0; at < before.length; at += 2) {
      const fingerprint = before[at];
      if (fingerprint === EMPTY) continue;
      let to = 2 * WAYS * (fingerprint & mask);
      while (this.slots[to] !== EMPTY) to += 2;
      this.slots[to] = fingerprint;
      this.slots[to + 1] = before[at + 1];
    }
  }
}
