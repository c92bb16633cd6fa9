import type { IncomingMessage } from 'node:http';
import { MAX_TOKEN_LENGTH } from '../keycard.constants.js';
import { InvalidRequestException, InvalidTokenException } from './keycard.exceptions.js';

/** RFC 6750 §2.1 `b64token`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Reads the bearer token from the `Authorization` header and nowhere else (catalogue Q3, Q4): a
 * strict, linear-time parser instead of passport-jwt's unanchored, quadratic regex (J4, A30).
 *
 * @returns the token, or `undefined` when no bearer credentials were sent (another scheme, or no
 *   header at all), which earns a challenge without an error code.
 * @throws InvalidRequestException for more than one `Authorization` header (A12–A14).
 * @throws InvalidTokenException for a `Bearer` header that is not exactly `Bearer 1*SP b64token`.
 */
export function extractBearerToken(request: IncomingMessage): string | undefined {
  // Node keeps only the first Authorization header in `headers`; the others are only visible in the
  // raw headers (scanned directly: the `headersDistinct` getter would build arrays for every header).
  return parseBearerCredentials(headerValues(request));
}

/**
 * The same grammar for credentials that arrive outside an HTTP header: gRPC `authorization`
 * metadata, graphql-ws `connectionParams`, a socket.io handshake. Same results and errors as
 * {@link extractBearerToken}, given every value received.
 */
export function parseBearerCredentials(values: readonly string[]): string | undefined {
  if (values.length === 0) return undefined;
  if (values.length > 1) throw new InvalidRequestException('multiple_tokens');
  const value = values[0];
  const schemeEnd = value.indexOf(' ');
  const scheme = schemeEnd === -1 ? value : value.slice(0, schemeEnd);
  if (scheme.toLowerCase() !== 'bearer') {
    // `Bearer<TAB>token` has no space and is one odd "scheme" word: still a malformed Bearer (A8).
    if (/^bearer[\t]/i.test(value)) throw new InvalidTokenException('token_malformed');
    return undefined;
  }
  let start = schemeEnd === -1 ? value.length : schemeEnd;
  while (value.charCodeAt(start) === 0x20) start++; // 1*SP (Q1)
  const token = value.slice(start);
  if (token.length === 0) throw new InvalidTokenException('token_malformed'); // Q2
  if (token.length > MAX_TOKEN_LENGTH) throw new InvalidTokenException('token_too_long');
  if (!B64TOKEN.test(token)) throw new InvalidTokenException('token_malformed');
  return token;
}

/** Every `Authorization` line as received. */
function headerValues(request: IncomingMessage): string[] {
  const values: string[] = [];
  const raw = request.rawHeaders ?? [];
  for (let i = 0; i < raw.length; i += 2) {
    // Length first: most header names are not 13 characters long, so most need no lower-casing.
    if (raw[i].length === 13 && raw[i].toLowerCase() === 'authorization') values.push(raw[i + 1]);
  }
  return values;
}
