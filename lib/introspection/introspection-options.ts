import type { IntrospectionModuleOptions } from '../interfaces/keycard-module-options.interface.js';

/** The `introspection` and `opaqueTokens` options after validation (catalogue Q36). */
export interface IntrospectionOptions {
  /** How long an `active` answer may be reused, in ms; 0: never (the default, Q36). */
  readonly maxAgeMs: number;
  /** Most answers kept. */
  readonly cacheSize: number;
  /** `opaqueTokens: 'introspect'`: tokens that are not JWTs are introspected instead of refused. */
  readonly opaqueTokens: boolean;
}

const MAX_AGE_LIMIT_SECONDS = 3600;

function fail(option: string, problem: string): never {
  throw new TypeError(`KeycardModule: '${option}' ${problem}`);
}

/**
 * Validates `introspection` and `opaqueTokens`.
 * @throws TypeError naming the option when one is invalid.
 */
export function normaliseIntrospectionOptions(raw: IntrospectionModuleOptions | undefined, opaque: unknown): IntrospectionOptions {
  if (raw !== undefined && (typeof raw !== 'object' || raw === null)) fail('introspection', 'must be an object ({ maxAgeSeconds?, cacheSize? })');
  for (const key of Object.keys(raw ?? {})) {
    if (key !== 'maxAgeSeconds' && key !== 'cacheSize') fail(`introspection.${key}`, 'is not an option (known: maxAgeSeconds, cacheSize)');
  }
  const maxAge = raw?.maxAgeSeconds ?? 0;
  if (typeof maxAge !== 'number' || !Number.isFinite(maxAge) || maxAge < 0 || maxAge > MAX_AGE_LIMIT_SECONDS) {
    fail('introspection.maxAgeSeconds', `must be a number of seconds from 0 to ${MAX_AGE_LIMIT_SECONDS}`);
  }
  const cacheSize = raw?.cacheSize ?? 10_000;
  if (typeof cacheSize !== 'number' || !Number.isInteger(cacheSize) || cacheSize < 0) fail('introspection.cacheSize', 'must be a whole number ≥ 0');
  if (opaque !== undefined && opaque !== 'reject' && opaque !== 'introspect') fail('opaqueTokens', "must be 'reject' or 'introspect'");
  return { maxAgeMs: maxAge * 1000, cacheSize, opaqueTokens: opaque === 'introspect' };
}
