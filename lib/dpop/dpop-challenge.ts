import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import { parseWwwAuthenticate } from '../www-authenticate.js';
import type { DpopOptions } from './dpop-options.js';

/**
 * Challenge parameters that belong to the error, written only on the scheme the client used, in the
 * order of the Bearer challenge: RFC 9470's `acr_values` and `max_age` go with their
 * `insufficient_user_authentication` (RFC 9470 §3: "other OAuth authentication schemes, such as DPoP").
 */
const ERROR_PARAMS = ['error', 'error_description', 'acr_values', 'max_age', 'scope'] as const;

/**
 * The `WWW-Authenticate` of a refusal when DPoP is on (RFC 9449 §7.1, §7.2): a `DPoP` challenge
 * with `algs` next to the `Bearer` one (mode `allowed`) or instead of it (mode `required`), the
 * error parameters only on the scheme the request used (a DPoP error, `invalid_dpop_proof` or
 * `use_dpop_nonce`, is always the DPoP scheme's), `resource_metadata` on both (RFC 9728 §5.1).
 * Other headers (`DPoP-Nonce`, `Retry-After`) are kept; answers without a challenge are unchanged.
 */
export function withDpopChallenge(
  headers: Readonly<Record<string, string>>,
  refusal: { denial: KeycardException; scheme: string | undefined; dpop: DpopOptions },
): Readonly<Record<string, string>> {
  const bearer = headers['WWW-Authenticate'];
  const status = refusal.denial.getStatus();
  if (bearer === undefined || (status !== 401 && status !== 403)) return headers;
  const params = parseWwwAuthenticate(bearer)?.[0]?.params;
  if (params === undefined) return headers;
  const error = params.get('error');
  const errorOnDpop = refusal.scheme === 'dpop' || error === 'invalid_dpop_proof' || error === 'use_dpop_nonce' || refusal.dpop.mode === 'required';
  const dpop = render('DPoP', params, { errors: errorOnDpop, algs: refusal.dpop.algs });
  const value = refusal.dpop.mode === 'required' ? dpop : `${errorOnDpop ? render('Bearer', params, { errors: false, scopeAlways: status === 401 }) : bearer}, ${dpop}`;
  return { ...headers, 'WWW-Authenticate': value };
}

/** One challenge: `realm`, the error parameters when `errors`, `algs` when given, then `resource_metadata`. */
function render(scheme: string, params: ReadonlyMap<string, string>, with_: { errors: boolean; algs?: string; scopeAlways?: boolean }): string {
  const parts: string[] = [];
  const add = (name: string, value: string | undefined) => {
    if (value !== undefined) parts.push(`${name}="${value}"`);
  };
  add('realm', params.get('realm'));
  for (const name of ERROR_PARAMS) {
    if (with_.errors || (name === 'scope' && with_.scopeAlways === true)) add(name, params.get(name));
  }
  add('algs', with_.algs);
  add('resource_metadata', params.get('resource_metadata'));
  return parts.length > 0 ? `${scheme} ${parts.join(', ')}` : scheme;
}
