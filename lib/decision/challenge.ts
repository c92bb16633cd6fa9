import { InsufficientScopeException, type KeycardException } from '../resource-server/keycard.exceptions.js';
import { requestState } from '../resource-server/request-state.js';
import type { Call } from './call.js';

/**
 * The refusal's headers (the RFC 6750 challenge). Where several calls share one HTTP response (the
 * fields of a GraphQL operation, MCP tool calls), each refusal writes the challenge again, so it
 * names every scope refused in the request so far, not only the last field's: a client that steps
 * up asks once for all it needs (RFC 6750 §3: the scope necessary to access the resource). The set
 * grows with distinct scopes only, so a refusal costs the same however many fields came before.
 */
export function challengeHeaders(call: Call, denial: KeycardException, realm: string | undefined): Record<string, string> {
  const { kind, carrier, rules } = call;
  const prm = call.resource?.metadataUrl;
  if (!kind.sharedCarrier || call.isConnection) return denial.headers(prm, realm, rules.scopeParam);
  const state = requestState(carrier);
  const named = (state.challengeScopes ??= new Set());
  for (const scope of denial.scopeNamed(rules.scopeParam)?.split(' ') ?? []) named.add(scope);
  if (denial instanceof InsufficientScopeException) return new InsufficientScopeException([...named]).headers(prm, realm);
  return denial.headers(prm, realm, named.size > 0 ? [...named].join(' ') : undefined);
}
