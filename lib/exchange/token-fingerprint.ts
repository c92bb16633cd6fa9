import { createHash } from 'node:crypto';

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * A hash that names one token for cache keys, never the token itself (catalogue I27).
 *
 * For a JWS compact token (`header.payload.signature`) the hash covers the signing input exactly as
 * written and the signature **bytes**: the last base64url character of the signature is hashed in
 * its canonical spelling (unused low bits zero, RFC 4648 §3.5), which is the only freedom a
 * base64url spelling of the same bytes has. So the 16 spellings of an RS256 signature share one
 * cache entry (catalogue V5, the exchange-side counterpart of M18), at the cost of one hash of the
 * string, without decoding it. Anything else is hashed as written.
 * @internal
 */
export function tokenFingerprint(token: string): string {
  const hash = createHash('sha256');
  const lastDot = token.lastIndexOf('.');
  // 4 chars carry 3 bytes: a remainder of 2 chars leaves 4 unused bits, of 3 chars 2 unused bits.
  const remainder = (token.length - lastDot - 1) % 4;
  const unusedBits = remainder === 2 ? 4 : remainder === 3 ? 2 : 0;
  const last = unusedBits === 0 ? -1 : BASE64URL_ALPHABET.indexOf(token[token.length - 1]);
  if (lastDot > 0 && token.indexOf('.') < lastDot && last >= 0) {
    hash.update(token.slice(0, -1)).update(BASE64URL_ALPHABET[last & ~((1 << unusedBits) - 1)]);
  } else {
    hash.update(token);
  }
  return hash.digest('base64url');
}
