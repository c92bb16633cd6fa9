/**
 * Where the `jti`s of accepted DPoP proofs are remembered until their window closes (RFC 9449
 * §11.1). Keys are already hashed: SHA-256 of the proof key's thumbprint and the `jti`, base64url,
 * never the raw `jti` ("store only a hash thereof").
 * @publicApi
 */
export interface DpopReplayStore {
  /**
   * Records `key` until `expiresAtMs` (epoch ms) in one atomic step.
   * @returns `true` when `key` was new, `false` when it is already held (a replay).
   * @throws (or rejects) when the store cannot answer; the module then falls back or refuses, as configured.
   */
  remember(key: string, expiresAtMs: number, nowMs: number): boolean | Promise<boolean>;
}

/**
 * The default store, one per instance: a map from key to expiry, and the keys again by the second
 * their record expires in, so a sweep (at most once a second) visits only the records that expired,
 * never the live ones. Capped so a flood of proofs cannot grow it without bound: when full, new
 * proofs are refused (fail closed rather than forget) until the next sweep frees room.
 * @publicApi
 */
export class InMemoryDpopReplayStore implements DpopReplayStore {
  private readonly entries = new Map<string, number>();
  /** Keys by the second (epoch s, rounded up) their record expires in; a key remembered again sits in two. */
  private readonly expiring = new Map<number, string[]>();
  /** The second last written to, and its keys: proofs of one moment share a second. */
  private latest?: { readonly second: number; readonly keys: string[] };
  private nextSweepMs = 0;

  /** @param maxEntries the most keys held at once. @default 1 000 000 */
  constructor(private readonly maxEntries = 1_000_000) {}

  /** Keys held now (expired ones included until the next sweep). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * True while `key` is held, unexpired at `nowMs`; records nothing. Drops expired records when a
   * sweep is due, as {@link remember} does: records an instance only asks about (its own, kept
   * while a shared store failed, once that store answers again) go when their windows close.
   */
  holds(key: string, nowMs: number): boolean {
    if (nowMs >= this.nextSweepMs) this.sweep(nowMs);
    const held = this.entries.get(key);
    return held !== undefined && held > nowMs;
  }

  remember(key: string, expiresAtMs: number, nowMs: number): boolean {
    if (this.holds(key, nowMs)) return false; // sweeps first when one is due
    if (this.entries.size >= this.maxEntries) return false;
    this.entries.set(key, expiresAtMs);
    this.keysExpiringIn(Math.ceil(expiresAtMs / 1000)).push(key);
    return true;
  }

  private keysExpiringIn(second: number): string[] {
    const { latest } = this;
    if (latest?.second === second) return latest.keys;
    let keys = this.expiring.get(second);
    if (keys === undefined) this.expiring.set(second, (keys = []));
    this.latest = { second, keys };
    return keys;
  }

  /** Drops every record expired by `nowMs`: the seconds that ended, each key unless remembered again since. */
  private sweep(nowMs: number): void {
    this.nextSweepMs = nowMs + 1000;
    for (const [second, keys] of this.expiring) {
      if (second * 1000 > nowMs) continue;
      for (const key of keys) if (this.entries.get(key)! <= nowMs) this.entries.delete(key);
      this.expiring.delete(second);
      if (this.latest?.keys === keys) this.latest = undefined;
    }
  }
}
