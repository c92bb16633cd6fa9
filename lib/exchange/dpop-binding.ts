import { DpopKey } from '../dpop/dpop-key.js';

/** A grant's request for a DPoP-bound token: the key, and whether a Bearer answer is refused. */
export interface DpopBinding {
  readonly key: DpopKey;
  readonly required: boolean;
}

/**
 * The `dpop` member of a grant request, normalised: a {@link DpopKey} alone asks without requiring.
 * @throws TypeError naming `caller` when it is neither a key nor `{ key, required? }`.
 * @internal
 */
export function dpopBinding(caller: string, raw: DpopKey | { key: DpopKey; required?: boolean } | undefined): DpopBinding | undefined {
  if (raw === undefined) return undefined;
  if (raw instanceof DpopKey) return { key: raw, required: false };
  if (!(raw?.key instanceof DpopKey)) throw new TypeError(`${caller}: 'dpop' must be a DpopKey or { key: DpopKey, required?: boolean }`);
  return { key: raw.key, required: raw.required === true };
}
