import type { KeycardException } from '../resource-server/keycard.exceptions.js';

/**
 * The level a refusal is logged at: routine ones (no credentials) at debug; a misconfigured zone
 * at debug too, because the zone services log it as an error once per interval, not once per
 * request; other server-side failures as errors; the client's mistakes as warnings.
 */
export function denialLogLevel(denial: KeycardException): 'debug' | 'warn' | 'error' {
  if (denial.code === 'no_credentials' || denial.code === 'zone_misconfigured') return 'debug';
  return denial.getStatus() >= 500 ? 'error' : 'warn';
}
