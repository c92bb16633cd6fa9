import type { ClaimOutcome } from './revocation-feed.js';

/** SET ids seen by this instance, when no feed shares them: each kept until its entry would expire. */
export class SeenIds {
  private readonly ids = new Map<string, { fingerprint: string; untilMs: number }>();

  claim(id: string, fingerprint: string, untilMs: number, nowMs: number): ClaimOutcome {
    const held = this.ids.get(id);
    if (held !== undefined && held.untilMs > nowMs) return held.fingerprint === fingerprint ? 'same' : 'different';
    this.ids.set(id, { fingerprint, untilMs });
    return 'first';
  }

  sweep(nowMs: number): void {
    for (const [id, held] of this.ids) if (held.untilMs <= nowMs) this.ids.delete(id);
  }
}
