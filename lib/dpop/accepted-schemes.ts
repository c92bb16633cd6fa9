import type { KeycardOptions } from '../keycard-options.js';
import { type AcceptedSchemes, BEARER_ONLY, BEARER_OR_DPOP } from '../resource-server/bearer-token.extractor.js';
const DPOP_ONLY: AcceptedSchemes = Object.freeze({ bearer: false, dpop: true });

/** The `Authorization` schemes HTTP requests are read with: Bearer only (DPoP off), both (`allowed`), DPoP only (`required`). */
export function acceptedSchemes(options: Pick<KeycardOptions, 'dpop'>): AcceptedSchemes {
  if (options.dpop === undefined) return BEARER_ONLY;
  return options.dpop.mode === 'required' ? DPOP_ONLY : BEARER_OR_DPOP;
}
