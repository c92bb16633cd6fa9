import { InvalidTokenException } from './keycard.exceptions.js';

/** A compact JWS split and decoded, before any signature check. */
export interface CompactJws {
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
}

/** Strict base64url: no padding, no `+`/`/`, nothing Node's lenient decoder would skip (B25). */
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Rejects overlong forms and other invalid UTF-8 instead of replacing them (B27). */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function decodeJsonObject(segment: string): Record<string, unknown> {
  // A base64url string whose length is 1 mod 4 cannot come from any byte sequence.
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) throw new InvalidTokenException('token_malformed');
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    throw new InvalidTokenException('token_malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidTokenException('token_malformed'); // B24, B26
  }
  return value as Record<string, unknown>;
}

/**
 * Splits a compact JWS into its decoded header and payload, refusing every shape that is not
 * exactly three strict base64url segments carrying JSON objects (catalogue B23–B27). The length cap
 * was applied by the extractor, so the JSON work is bounded (B30). The signature is not checked here.
 */
export function parseCompactJws(token: string): CompactJws {
  const first = token.indexOf('.');
  const second = first === -1 ? -1 : token.indexOf('.', first + 1);
  if (first <= 0 || second === -1 || token.indexOf('.', second + 1) !== -1) {
    throw new InvalidTokenException('token_malformed');
  }
  const signature = token.slice(second + 1);
  if (signature.length === 0 || !BASE64URL.test(signature)) throw new InvalidTokenException('signature_invalid'); // B11
  const header = decodeJsonObject(token.slice(0, first));
  const payload = decodeJsonObject(token.slice(first + 1, second));
  return { header, payload };
}
