import { DeadlineExceededError } from './within-deadline.js';

/** A wait that has not settled yet: when it is abandoned, and how. */
interface Waiting {
  readonly abandonAtMs: number;
  readonly reject: (error: Error) => void;
}

/** Ticks without any wait before the ticker stops (it starts again with the next wait). */
const IDLE_TICKS = 20;

/**
 * Deadlines for many short waits on one shared store (a Redis round trip per request), without a
 * timer per wait: `setTimeout` + `clearTimeout` per request cost more CPU than the round trip's
 * own client work (timer list and priority-queue updates, the libuv timer re-armed each time the
 * list empties). One unreferenced ticker, every `ms / 5`, abandons the waits that are due; it
 * stops after {@link IDLE_TICKS} ticks with nothing waiting, so an idle app holds no timer.
 *
 * A wait is abandoned between `ms` and `ms + ms / 5` after it began (milliseconds of `Date.now()`).
 */
export class CoarseDeadlines {
  private readonly waiting = new Set<Waiting>();
  private readonly tickMs: number;
  private ticker: NodeJS.Timeout | undefined;
  private idleTicks = 0;

  /** @param ms how long a wait may take, in milliseconds (≥ 1). */
  constructor(private readonly ms: number) {
    this.tickMs = Math.max(1, Math.ceil(ms / 5));
  }

  /**
   * `work`'s outcome, or a {@link DeadlineExceededError} once the deadline has passed; a late
   * outcome of abandoned work is dropped (never an unhandled rejection).
   */
  within<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const wait: Waiting = { abandonAtMs: Date.now() + this.ms, reject };
      this.waiting.add(wait);
      if (this.ticker === undefined) this.start();
      work.then(
        (value) => {
          if (this.waiting.delete(wait)) resolve(value);
        },
        (error: unknown) => {
          if (this.waiting.delete(wait)) reject(error);
        },
      );
    });
  }

  private start(): void {
    this.idleTicks = 0;
    this.ticker = setInterval(() => this.tick(), this.tickMs);
    this.ticker.unref();
  }

  private tick(): void {
    if (this.waiting.size === 0) {
      if (++this.idleTicks >= IDLE_TICKS) {
        clearInterval(this.ticker);
        this.ticker = undefined;
      }
      return;
    }
    this.idleTicks = 0;
    const nowMs = Date.now();
    for (const wait of this.waiting) {
      if (wait.abandonAtMs > nowMs) continue;
      this.waiting.delete(wait);
      wait.reject(new DeadlineExceededError(`no answer within ${this.ms} ms`));
    }
  }
}
