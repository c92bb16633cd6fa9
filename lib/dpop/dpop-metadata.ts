import type { DpopOptions } from './dpop-options.js';

/**
 * The DPoP members of the protected resource metadata (RFC 9728 §2): the proof algorithms when
 * DPoP is on, and `dpop_bound_access_tokens_required: true` only when it is required (its default
 * is `false`, so it is left out otherwise). Never `none` or `HS*`: the options refuse them.
 */
export function dpopMetadata(dpop: DpopOptions | undefined): Record<string, unknown> {
  if (dpop === undefined) return {};
  return {
    dpop_signing_alg_values_supported: [...dpop.algorithms],
    ...(dpop.mode === 'required' ? { dpop_bound_access_tokens_required: true } : {}),
  };
}
