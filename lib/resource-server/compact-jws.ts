import { isUtf8 } from 'node:buffer';
import { InvalidTokenException } from './keycard.exceptions.js';

/** Strict base64url: no padding, no `+`/`/`, nothing Node's lenient decoder would skip (B25). */
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** JSON whitespace that may precede the `{` of an object (RFC 8259 §2). */
const JSON_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * Decodes one segment: strict base64url (a length of 1 mod 4 cannot come from any bytes), and
 * valid UTF-8 — overlong forms and other invalid sequences are refused, not replaced (B27).
 */
function decodeSegment(segment: string): Buffer {
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) throw new InvalidTokenException('token_malformed');
  const bytes = Buffer.from(segment, 'base64url');
  if (!isUtf8(bytes)) throw new InvalidTokenException('token_malformed');
  return bytes;
}

/** True when the bytes hold JSON text that can only be an object (or invalid): first non-space is `{`. */
function startsAnObject(bytes: Buffer): boolean {
  let i = 0;
  while (i < bytes.length && JSON_WHITESPACE.has(bytes[i])) i++;
  return bytes[i] === 0x7b;
}

/**
 * Checks the shape of a compact JWS and returns its decoded header, refusing everything that is
 * not exactly three strict base64url segments with valid UTF-8, a JSON object header and a payload
 * that can only be a JSON object (catalogue B23–B27). The payload is parsed once, by jsonwebtoken
 * under passport-jwt, after this check made it safe to hand over (J2: it parses before verifying;
 * a `null` payload would make it throw outside its callback). The extractor's length cap bounds all
 * of this (B30). The signature is not checked here.
 */
export function readJwsHeader(token: string): Readonly<Record<string, unknown>> {
  const first = token.indexOf('.');
  const second = first === -1 ? -1 : token.indexOf('.', first + 1);
  if (first <= 0 || second === -1 || token.indexOf('.', second + 1) !== -1) {
    throw new InvalidTokenException('token_malformed');
  }
  const signature = token.slice(second + 1);
  if (signature.length === 0 || !BASE64URL.test(signature)) throw new InvalidTokenException('signature_invalid'); // B11
  if (!startsAnObject(decodeSegment(token.slice(first + 1, second)))) throw new InvalidTokenException('token_malformed'); // B26
  let header: unknown;
  try {
    header = JSON.parse(decodeSegment(token.slice(0, first)).toString('utf8'));
  } catch (error) {
    if (error instanceof InvalidTokenException) throw error;
    throw new InvalidTokenException('token_malformed');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new InvalidTokenException('token_malformed'); // B24
  }
  return header as Record<string, unknown>;
}
