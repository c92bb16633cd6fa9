/**
 * How long {@link KeycardHealthIndicator} keeps the zone's answer (decision Q23). Provide it under
 * {@link KEYCARD_HEALTH_OPTIONS} next to the indicator:
 * `providers: [KeycardHealthIndicator, { provide: KEYCARD_HEALTH_OPTIONS, useValue: { cacheUpSeconds: 30 } }]`.
 * Checks that arrive while the zone is being asked share that one round trip, whatever the windows.
 * @publicApi
 */
export interface KeycardHealthOptions {
  /** Seconds an `up` answer is reused before the zone is asked again; `0` asks on every check. @default 10 */
  cacheUpSeconds?: number;
  /** Seconds a `down` answer is reused, so an unreachable zone is not asked on every check; `0` asks on every check. @default 2 */
  cacheDownSeconds?: number;
}

/** Injection token of {@link KeycardHealthOptions} (optional: the defaults apply without it). @publicApi */
export const KEYCARD_HEALTH_OPTIONS = 'KEYCARD:HEALTH_OPTIONS';

/** The windows in milliseconds, defaults applied. */
export interface HealthCacheWindows {
  readonly upMs: number;
  readonly downMs: number;
}

/**
 * The windows of `options`, defaults applied.
 * @throws TypeError when a window is given and is not a finite number ≥ 0 (the app fails at bootstrap).
 */
export function healthCacheWindows(options: KeycardHealthOptions = {}): HealthCacheWindows {
  return { upMs: seconds(options, 'cacheUpSeconds', 10) * 1000, downMs: seconds(options, 'cacheDownSeconds', 2) * 1000 };
}

function seconds(options: KeycardHealthOptions, name: keyof KeycardHealthOptions, fallback: number): number {
  const value: unknown = options[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`KeycardHealthIndicator: ${name} must be a finite number ≥ 0 (seconds), not ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}
