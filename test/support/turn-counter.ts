/**
 * Counts turns of the event loop with a `setImmediate` chain, and how many times something happened
 * in each: a pacing test's measure that is a count, never a time.
 */
export class TurnCounter {
  private readonly perTurn = new Map<number, number>();
  private turn = 0;
  private ticking = false;

  /** Starts counting turns. */
  start(): void {
    this.ticking = true;
    const tick = () => {
      this.turn++;
      if (this.ticking) setImmediate(tick);
    };
    setImmediate(tick);
  }

  /** Stops the chain (so Jest can exit). */
  stop(): void {
    this.ticking = false;
  }

  /** Notes one occurrence in the current turn. */
  note(): void {
    this.perTurn.set(this.turn, (this.perTurn.get(this.turn) ?? 0) + 1);
  }

  /** The most occurrences in any one turn (0 when none). */
  most(): number {
    return Math.max(0, ...this.perTurn.values());
  }
}
