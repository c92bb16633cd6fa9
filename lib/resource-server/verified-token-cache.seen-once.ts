/**
 * The verified tokens seen once recently, so the verified-token cache keeps only tokens sent a
 * second time (issue 24: a per-action token is never stored). Bounded to `capacity` tokens, the
 * oldest forgotten first, and nothing of a token is kept but a 30-bit fingerprint of its
 * signature: small integers in a `Set` and a ring of them, no allocation per token once full.
 *
 * A fingerprint only decides whether a verified token is worth caching: two tokens with the same
 * fingerprint make the second one cached on its first verification, never admitted without one
 * (the cache compares the whole token text). Only tokens whose signature verified reach here, so
 * a flood of forged ones cannot push out the tokens that were seen.
 */
export class SeenOnce {
  private readonly fingerprints = new Set<number>();
  /**
   * The fingerprints in the order they were seen, -1 for none: allocated at the first token (none
   * with the cache off) and grown by doubling up to `capacity`, so a large cache size costs memory
   * only as tokens come.
   */
  private ring = new Int32Array(0);
  private next = 0;

  constructor(private readonly capacity: number) {}

  /**
   * True when the token of `fingerprint` (`fingerprintOf` in token-fingerprint.ts) was not seen (then it is
   * remembered); false when it was (then it is forgotten here: its next stop is the cache).
   */
  firstSight(fingerprint: number): boolean {
    if (this.fingerprints.delete(fingerprint)) return false;
    if (this.capacity <= 0) return true;
    if (this.next === this.ring.length && this.ring.length < this.capacity) this.grow();
    // The slot's fingerprint may have been seen twice since (then deleted already), or again after
    // that: forgetting it then only makes that token wait for one more verification.
    const oldest = this.ring[this.next];
    if (oldest >= 0) this.fingerprints.delete(oldest);
    this.ring[this.next] = fingerprint;
    this.next = (this.next + 1) % this.capacity;
    this.fingerprints.add(fingerprint);
    return true;
  }

  private grow(): void {
    const ring = new Int32Array(Math.min(this.capacity, Math.max(1024, 2 * this.ring.length))).fill(-1);
    ring.set(this.ring);
    this.ring = ring;
  }
}
