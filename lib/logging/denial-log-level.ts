import type { KeycardException } from '../resource-server/keycard.exceptions.js';

/** Refusals whose cause is logged as an error once per interval where it is found. */
const ONCE_PER_INTERVAL_ELSEWHERE = new Set<string>(['zone_misconfigured', 'resource_unconfigured']);

/**
 * The level a refusal is logged at: routine ones (no credentials) at debug; a misconfigured zone
 * or a missing `resource` at debug too, because the zone services and the resource resolver log
 * them as an error once per interval, not once per request; other server-side failures as errors;
 * the client's mistakes as warnings.
 */
export function denialLogLevel(denial: KeycardException): 'debug' | 'warn' | 'error' {
  if (ONCE_PER_INTERVAL_ELSEWHERE.has(denial.code) || denial.code === 'no_credentials') return 'debug';
  return denial.getStatus() >= 500 ? 'error' : 'warn';
}
