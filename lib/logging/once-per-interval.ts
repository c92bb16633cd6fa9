import type { Clock } from '../clock.js';

/**
 * How often an error that any request (or a retry loop) can repeat is logged: once per interval,
 * however often it recurs, so that a misconfiguration is visible and nobody can flood the log
 * with it. Shared by the zone's configuration errors and the resolver's "no resource" 500.
 */
export const ERROR_LOG_INTERVAL_MS = 60_000;

/** The tail such a log line ends with, so a reader knows later repeats are not logged. */
export const ONCE_PER_INTERVAL_NOTE = `this error is logged once per ${ERROR_LOG_INTERVAL_MS / 60_000} min`;

/** A gate that opens at most once per interval (read from the module's clock). */
export class OncePerInterval {
  private openedAt = -Infinity;

  /** @param intervalMs milliseconds between two openings. @default ERROR_LOG_INTERVAL_MS */
  constructor(
    private readonly clock: Clock,
    private readonly intervalMs = ERROR_LOG_INTERVAL_MS,
  ) {}

  /** True at most once per interval: the caller logs then, and stays silent otherwise. */
  due(): boolean {
    const now = this.clock.now();
    if (now - this.openedAt < this.intervalMs) return false;
    this.openedAt = now;
    return true;
  }
}
