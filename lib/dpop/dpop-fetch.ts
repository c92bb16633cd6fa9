import { parseWwwAuthenticate } from '../www-authenticate.js';
import type { DpopKey } from './dpop-key.js';

/** A `fetch`-compatible function. */
export type DpopFetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Options of {@link dpopFetch}. */
export interface DpopFetchOptions {
  /** The underlying fetch. @default globalThis.fetch */
  fetch?: DpopFetchLike;
}

/**
 * A `fetch` that presents a DPoP-bound access token (RFC 9449 §7.1): `Authorization: DPoP <token>`
 * and a fresh proof per request (`htm`, `htu` without query and fragment, `ath`, a new `jti`). When
 * the server answers 401 `use_dpop_nonce` with a `DPoP-Nonce`, the request is sent once more with a
 * new proof carrying that nonce (§9); the last nonce of each origin is reused for later requests.
 * The request body must be replayable for the retry (a string, buffer or form, not a stream).
 *
 * @example
 * ```ts
 * const call = dpopFetch(key);
 * const res = await call('https://api.example.com/orders', { accessToken: token.accessToken });
 * ```
 * @publicApi
 */
export function dpopFetch(key: DpopKey, options: DpopFetchOptions = {}) {
  const send = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const nonces = new Map<string, string>();
  const attempt = (url: string, init: RequestInit & { accessToken: string }, nonce: string | undefined) => {
    const { accessToken, ...rest } = init;
    const method = (rest.method ?? 'GET').toUpperCase();
    const headers = new Headers(rest.headers);
    headers.set('authorization', `DPoP ${accessToken}`);
    headers.set('dpop', key.proof({ method, url, accessToken, nonce }));
    return send(url, { ...rest, method, headers });
  };
  return async (url: string, init: RequestInit & { accessToken: string }): Promise<Response> => {
    const origin = new URL(url).origin;
    const first = await attempt(url, init, nonces.get(origin));
    const nonce = first.headers.get('dpop-nonce');
    if (nonce !== null) nonces.set(origin, nonce);
    if (first.status !== 401 || nonce === null || !asksForNonce(first.headers.get('www-authenticate'))) return first;
    await first.body?.cancel().catch(() => undefined);
    return attempt(url, init, nonce);
  };
}

/** True when a `DPoP` challenge names `use_dpop_nonce` (RFC 9449 §9). */
function asksForNonce(value: string | null): boolean {
  const challenges = value === null ? undefined : parseWwwAuthenticate(value);
  return challenges?.some((c) => c.scheme.toLowerCase() === 'dpop' && c.params.get('error') === 'use_dpop_nonce') === true;
}
