import type { IncomingMessage } from 'node:http';
import { MAX_TOKEN_LENGTH } from '../keycard.constants.js';
import { InvalidRequestException, InvalidTokenException } from './keycard.exceptions.js';

/** RFC 6750 §2.1 `b64token`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The authentication schemes a door accepts: `Bearer` (RFC 6750) unless DPoP is required, `DPoP`
 * (RFC 9449 §7.1) when DPoP is on and the door is an HTTP request. A scheme not accepted is
 * answered like any unknown scheme: no credentials (RFC 6750 §3.1, catalogue H0a, H24).
 */
export interface AcceptedSchemes {
  readonly bearer: boolean;
  readonly dpop: boolean;
}

/** The default, and every door that is not an HTTP request. */
export const BEARER_ONLY: AcceptedSchemes = Object.freeze({ bearer: true, dpop: false });
/** Both schemes: DPoP `allowed`, and reading back the token of a call the guard already admitted. */
export const BEARER_OR_DPOP: AcceptedSchemes = Object.freeze({ bearer: true, dpop: true });

/**
 * Reads the bearer token from the `Authorization` header and nowhere else (catalogue Q3, Q4): a
 * strict, linear-time parser instead of passport-jwt's unanchored, quadratic regex (J4, A30).
 *
 * @returns the token, or `undefined` when no bearer credentials were sent (another scheme, or no
 *   header at all), which earns a challenge without an error code.
 * @throws InvalidRequestException for more than one `Authorization` header (A12–A14).
 * @throws InvalidTokenException for a `Bearer` header that is not exactly `Bearer 1*SP b64token`.
 */
export function extractBearerToken(request: IncomingMessage, schemes: AcceptedSchemes = BEARER_ONLY): string | undefined {
  return withBearerGrammar(extractCredentials(request, schemes));
}

/**
 * {@link extractBearerToken} without the `b64token` grammar check, for the doors whose every token
 * goes to `TokenVerifier`, which checks it only where nothing else implies it (issue 24: it is a
 * scan of the whole token on every request; a cache hit is the text of a token that passed it,
 * and a token that decodes as a compact JWS passes it). Same errors otherwise.
 * @internal
 */
export function extractCredentials(request: IncomingMessage, schemes: AcceptedSchemes = BEARER_ONLY): string | undefined {
  // Node keeps only the first Authorization header in `headers`; the others are only visible in the
  // raw headers (scanned directly: the `headersDistinct` getter would build arrays for every header).
  // One pass, no array: this runs on every request (issue 24).
  const raw = request.rawHeaders ?? [];
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (!isAuthorization(raw[i])) continue;
    if (value !== undefined) throw new InvalidRequestException('multiple_tokens');
    value = raw[i + 1];
  }
  return value === undefined ? undefined : parseCredentials(value, schemes);
}

/** True when `token` is an RFC 6750 §2.1 `b64token` (what follows `Bearer `). */
export function isBearerTokenText(token: string): boolean {
  return B64TOKEN.test(token);
}

/**
 * `token` (or `undefined`, no credentials) once it is a `b64token` (RFC 6750 §2.1).
 * @throws InvalidTokenException `token_malformed` otherwise.
 * @internal
 */
export function withBearerGrammar<T extends string | undefined>(token: T): T {
  if (token !== undefined && !B64TOKEN.test(token)) throw new InvalidTokenException('token_malformed');
  return token;
}

/**
 * The same grammar for credentials that arrive outside an HTTP header: gRPC `authorization`
 * metadata, graphql-ws `connectionParams`, a socket.io handshake. Same results and errors as
 * {@link extractBearerToken}, given every value received.
 */
export function parseBearerCredentials(values: readonly string[], schemes: AcceptedSchemes = BEARER_ONLY): string | undefined {
  if (values.length === 0) return undefined;
  if (values.length > 1) throw new InvalidRequestException('multiple_tokens');
  return withBearerGrammar(parseCredentials(values[0], schemes));
}

/** The token of one credentials value (see {@link parseBearerCredentials}), its `b64token` grammar not checked yet. */
function parseCredentials(value: string, schemes: AcceptedSchemes): string | undefined {
  const schemeEnd = value.indexOf(' ');
  const schemeLength = schemeEnd === -1 ? value.length : schemeEnd;
  if (isScheme(value, schemeLength, 'bearer') ? !schemes.bearer : !isScheme(value, schemeLength, 'dpop') || !schemes.dpop) {
    // `Bearer<TAB>token` has no space and is one odd "scheme" word: still a malformed Bearer (A8).
    if (schemes.bearer && /^bearer[\t]/i.test(value)) throw new InvalidTokenException('token_malformed');
    return undefined;
  }
  let start = schemeEnd === -1 ? value.length : schemeEnd;
  while (value.charCodeAt(start) === 0x20) start++; // 1*SP (Q1)
  const token = value.slice(start);
  if (token.length === 0) throw new InvalidTokenException('token_malformed'); // Q2
  if (token.length > MAX_TOKEN_LENGTH) throw new InvalidTokenException('token_too_long');
  return token;
}

/**
 * True when the first `length` characters of `value` are `name` (lower-case letters) in any case
 * (RFC 9110 §11.1: schemes are case-insensitive), without the two strings a slice and a
 * `toLowerCase` would make per request. `| 0x20` lower-cases an ASCII letter and maps no other
 * character onto one.
 */
function isScheme(value: string, length: number, name: string): boolean {
  if (length !== name.length) return false;
  for (let i = 0; i < length; i++) if ((value.charCodeAt(i) | 0x20) !== name.charCodeAt(i)) return false;
  return true;
}

/** A raw header name that is `Authorization` in any case. */
function isAuthorization(name: string): boolean {
  // Length first: most header names are not 13 characters long, so most need no lower-casing.
  return name.length === 13 && name.toLowerCase() === 'authorization';
}
