import { createHash } from 'node:crypto';

/** A base64url segment (RFC 4648 §5) without padding; anything else is hashed as written. */
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * A hash that names one token for cache keys, never the token itself (catalogue I27).
 *
 * For a JWS compact token the hash covers the signing input (the bytes the signature protects,
 * exactly as written) and the **decoded** signature bytes, so the non-canonical spellings of one
 * signature (a last base64url character with non-zero unused bits, RFC 4648 §3.5; catalogue M18)
 * share one cache entry (catalogue V5). Any other token is hashed as written.
 * @internal
 */
export function tokenFingerprint(token: string): string {
  const hash = createHash('sha256');
  const lastDot = token.lastIndexOf('.');
  const signature = lastDot > 0 ? token.slice(lastDot + 1) : '';
  if (lastDot > 0 && token.indexOf('.') < lastDot && signature !== '' && BASE64URL.test(signature)) {
    hash.update('jws\0').update(token.slice(0, lastDot)).update('\0').update(Buffer.from(signature, 'base64url'));
  } else {
    hash.update('raw\0').update(token);
  }
  return hash.digest('base64url');
}
