import type { KeycardOptions } from '../keycard-options.js';
import { KeycardException } from '../resource-server/keycard.exceptions.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import { logSafe } from './log-safe.js';

/**
 * At debug level, a token that failed verification is followed by what the module expected of
 * it: the issuer(s) (`zoneUrl`) and the audience (`resource`). A token minted for another audience
 * or by another zone is the most common first-hour mistake, and the denial line alone
 * (`reason=audience_mismatch`) does not say what the right value would have been. Called where a
 * token is verified, so once per token however many calls share the refusal (a GraphQL operation
 * of 200 fields costs one line), and never on the success path. Configuration only: no claim of
 * the token, never the token.
 */
export function explainRefusedToken(options: KeycardOptions, error: unknown, resource: ProtectedResource): void {
  if (typeof options.logger.debug !== 'function') return;
  const status = error instanceof KeycardException ? error.getStatus() : 401;
  if (status !== 401) return; // a zone outage or a misconfiguration is logged as such
  const code = error instanceof KeycardException ? error.code : 'invalid_token';
  const issuers = options.zones.filter((zone) => zone.resourceIds === undefined || zone.resourceIds.has(resource.id)).map((zone) => zone.issuer);
  options.logger.debug(`Token refused (${code}): this API expects tokens from issuer ${issuers.join(' or ')} for audience ${logSafe(resource.id, 512)}`);
}
