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
 * The default store, one per instance: a map from key to expiry, swept of expired entries at most
 * once a second, and capped so a flood of proofs cannot grow it without bound (when full, new proofs
 * are refused: fail closed rather than forget).
 * @publicApi
 */
export class InMemoryDpopReplayStore implements DpopReplayStore {
  private readonly entries = new Map<string, number>();
  private nextSweepMs = 0;

  /** @param maxEntries the most keys held at once. @default 1 000 000 */
  constructor(private readonly maxEntries = 1_000_000) {}

  /** Keys held now (expired ones included until the next sweep). */
  get size(): number {
    return this.entries.size;
  }

  remember(key: string, expiresAtMs: number, nowMs: number): boolean {
    const held = this.entries.get(key);
    if (held !== undefined && held > nowMs) return false;
    if (nowMs >= this.nextSweepMs || this.entries.size >= this.maxEntries) this.sweep(nowMs);
    if (this.entries.size >= this.maxEntries) return false;
    this.entries.set(key, expiresAtMs);
    return true;
  }

  private sweep(nowMs: number): void {
    this.nextSweepMs = nowMs + 1000;
    for (const [key, expiresAtMs] of this.entries) if (expiresAtMs <= nowMs) this.entries.delete(key);
  }
}
