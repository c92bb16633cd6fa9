/**
 * The time every rule of the module reads (token lifetimes, cache ages, cooldowns). Provided under
 * `KEYCARD_CLOCK`; tests replace `now` on the instance to move time without waiting.
 * @publicApi
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** The real clock. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
}
