import { isUtf8 } from 'node:buffer';
import { InvalidTokenException } from './keycard.exceptions.js';

/** Strict base64url: no padding, no `+`/`/`, nothing Node's lenient decoder would skip (B25). */
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Characters whose 6-bit value has its low 4 / low 2 bits zero: the only ones that may end a segment of length 2 / 3 mod 4. */
const ENDS_2 = 'AQgw';
const ENDS_3 = 'AEIMQUYcgkosw048';
/** JSON whitespace that may precede the `{` of an object (RFC 8259 §2). */
const JSON_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * True when `segment` is the one base64url spelling of its bytes (RFC 7515 §2, RFC 4648 §3.5): only
 * alphabet characters, no padding, a length that is not 1 mod 4, and zero unused bits in the last
 * character. Otherwise one signature could be written 16 ways (the last of 342 characters of an
 * RS256 signature carries 4 unused bits), each a distinct token to every cache keyed by its text
 * (catalogue M18). Costs one scan and one look-up: no decoding, no re-encoding.
 * @internal shared by the guard and the token exchange, which key caches on token text.
 */
export function isCanonicalBase64url(segment: string): boolean {
  const tail = segment.length % 4;
  if (tail === 1 || !BASE64URL.test(segment)) return false;
  if (tail === 0) return true;
  return (tail === 2 ? ENDS_2 : ENDS_3).includes(segment[segment.length - 1]);
}

/**
 * True when `token` is three canonical base64url segments (see {@link isCanonicalBase64url}): the
 * check a cache keyed on token text needs so that one token has one key.
 * @internal
 */
export function hasCanonicalSegments(token: string): boolean {
  const segments = splitCompact(token);
  return segments !== undefined && segments.every(isCanonicalBase64url);
}

/** The three segments of a compact JWS, or undefined when there are not exactly three (or an empty header). */
function splitCompact(token: string): [header: string, payload: string, signature: string] | undefined {
  const first = token.indexOf('.');
  const second = first === -1 ? -1 : token.indexOf('.', first + 1);
  if (first <= 0 || second === -1 || token.indexOf('.', second + 1) !== -1) return undefined;
  return [token.slice(0, first), token.slice(first + 1, second), token.slice(second + 1)];
}

/**
 * Decodes one segment: canonical base64url (M18, B25), and valid UTF-8 — overlong forms and other
 * invalid sequences are refused, not replaced (B27).
 */
function decodeSegment(segment: string): Buffer {
  if (!isCanonicalBase64url(segment)) throw new InvalidTokenException('token_malformed');
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
 * A compact JWS decoded once, for every step that reads it (issue 24): the key choice reads the
 * header, the signature check the signing input and signature, the claim checks the payload.
 */
export interface DecodedJws {
  readonly header: Readonly<Record<string, unknown>>;
  /** True when {@link header} came from the caller's known headers rather than from decoding. */
  readonly headerKnown: boolean;
  /** Length of the header segment: the index of the first `.`. */
  readonly headerLength: number;
  /** The payload's bytes: canonical base64url decoded, valid UTF-8, the start of a JSON object. Not yet parsed. */
  readonly payload: Buffer;
  /** Length of the JWS Signing Input `<header>.<payload>` (RFC 7515 §5.2): the index of the second `.`. */
  readonly signedLength: number;
}

/**
 * Checks the shape of a compact JWS and decodes it, refusing everything that is not exactly three
 * canonical base64url segments with valid UTF-8, a JSON object header and a payload that can only
 * be a JSON object (catalogue B23–B27). The payload is decoded here and parsed only after the
 * signature is checked (J2: never the attacker's JSON before the signature, with one zone). The
 * extractor's length cap bounds all of this (B30). The signature is not checked here. Runs before
 * every signature check, so only a canonical token is ever verified, and so only its one spelling
 * enters the verified-token cache (M18); a respelling misses the cache and is refused here.
 * @param knownHeader the header already decoded from this exact header text, if the caller has it
 *   (the guard's `SignedHeaders`): that text passed every check here before, so it is not
 *   decoded again. The other two segments are checked and decoded on every call.
 * @throws InvalidTokenException `token_malformed`, or `signature_invalid` for a non-canonical signature.
 */
export function decodeJws(token: string, knownHeader?: (segment: string) => Readonly<Record<string, unknown>> | undefined): DecodedJws {
  const first = token.indexOf('.');
  const second = first === -1 ? -1 : token.indexOf('.', first + 1);
  if (first <= 0 || second === -1 || token.indexOf('.', second + 1) !== -1) throw new InvalidTokenException('token_malformed');
  if (!isCanonicalBase64url(token.slice(second + 1))) throw new InvalidTokenException('signature_invalid'); // B11, M18
  const payload = decodeSegment(token.slice(first + 1, second));
  if (!startsAnObject(payload)) throw new InvalidTokenException('token_malformed'); // B26
  const segment = token.slice(0, first);
  const known = knownHeader?.(segment);
  const header = known ?? decodeHeader(segment);
  return { header, headerKnown: known !== undefined, headerLength: first, payload, signedLength: second };
}

/** A header segment decoded: canonical base64url, UTF-8, a JSON object (B24, B25, B27). */
function decodeHeader(segment: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(decodeSegment(segment).toString('utf8'));
  } catch (error) {
    if (error instanceof InvalidTokenException) throw error;
    throw new InvalidTokenException('token_malformed');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new InvalidTokenException('token_malformed'); // B24
  }
  return header as Record<string, unknown>;
}

/**
 * The decoded header of a compact JWS, after every shape check of {@link decodeJws}.
 * @throws InvalidTokenException as {@link decodeJws}.
 */
export function readJwsHeader(token: string): Readonly<Record<string, unknown>> {
  return decodeJws(token).header;
}

/**
 * The claims of a payload {@link decodeJws} returned: a JSON object, else `token_malformed` (B26).
 * @throws InvalidTokenException `token_malformed`.
 */
export function parsePayload(payload: Buffer): Record<string, unknown> {
  let claims: unknown;
  try {
    claims = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new InvalidTokenException('token_malformed');
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw new InvalidTokenException('token_malformed');
  return claims as Record<string, unknown>;
}

/**
 * The `iss` of a compact JWS's payload, read before its signature is checked: only to pick the
 * trusted zone whose keys must then verify it (RFC 8725 §3.8). Undefined when the token is not a
 * JWS with a JSON object payload or has no string `iss`. Never throws.
 */
export function readUnverifiedIssuer(token: string): string | undefined {
  const first = token.indexOf('.');
  const second = first === -1 ? -1 : token.indexOf('.', first + 1);
  if (first <= 0 || second === -1) return undefined;
  try {
    const payload = JSON.parse(decodeSegment(token.slice(first + 1, second)).toString('utf8')) as unknown;
    const iss = typeof payload === 'object' && payload !== null ? (payload as { iss?: unknown }).iss : undefined;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}
