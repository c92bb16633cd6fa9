import type { IncomingMessage } from 'node:http';

/**
 * Server nonces (RFC 9449 §8.2) to announce on the answer that opens a connection: the `ws` 101
 * of the upgrade `request` whose proof carried a nonce past half its lifetime. The DPoP validator
 * records one when it judges the opening; the `ws` server's `headers` event takes it, so the
 * client learns the new nonce before it needs it for its next opening. Held weakly: a request
 * refused after its proof was judged leaves nothing behind.
 */
const ANNOUNCED = new WeakMap<IncomingMessage, string>();

/** Records `nonce` for the opening answer of `request`. */
export function announceAtOpening(request: IncomingMessage, nonce: string): void {
  ANNOUNCED.set(request, nonce);
}

/**
 * The headers announcing the nonce recorded for `request`, if any (`DPoP-Nonce` and, as for any
 * answer carrying one, `Cache-Control: no-store`), in the `Name: value` form of the `ws` `headers`
 * event; the record is taken.
 */
export function takeOpeningNonceHeaders(request: IncomingMessage): string[] {
  const nonce = ANNOUNCED.get(request);
  if (nonce === undefined) return [];
  ANNOUNCED.delete(request);
  return [`DPoP-Nonce: ${nonce}`, 'Cache-Control: no-store'];
}
