/**
 * A value loaded from the zone, shared by every caller: concurrent loads collapse into one
 * (catalogue E1, F8), a failure is handed to all waiters and never cached (F9), and the last good
 * value and the time of every attempt are kept for the callers' freshness rules.
 */
export class RefreshingValue<T> {
  private current?: { value: T; loadedAt: number };
  private inFlight?: Promise<T>;
  private lastAttemptAt = -Infinity;
  private lastFailed = false;

  constructor(
    private readonly loader: () => Promise<T>,
    private readonly now: () => number,
  ) {}

  /** The last value loaded successfully, with the time it was loaded. */
  get last(): { value: T; loadedAt: number } | undefined {
    return this.current;
  }

  /** When the last load started (successful or not), in clock milliseconds. */
  get attemptedAt(): number {
    return this.lastAttemptAt;
  }

  /** True when the most recent finished load failed. */
  get failing(): boolean {
    return this.lastFailed;
  }

  /** Loads now, or joins the load already under way. */
  load(): Promise<T> {
    if (this.inFlight) return this.inFlight;
    this.lastAttemptAt = this.now();
    const attempt = this.loader().then(
      (value) => {
        this.current = { value, loadedAt: this.now() };
        this.lastFailed = false;
        return value;
      },
      (error: unknown) => {
        this.lastFailed = true;
        throw error;
      },
    );
    this.inFlight = attempt.finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }
}
