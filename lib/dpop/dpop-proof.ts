import { hash, verify } from 'node:crypto';
import { isCanonicalBase64url } from '../resource-server/compact-jws.js';
import { InvalidTokenException } from '../resource-server/keycard.exceptions.js';
import type { DpopOptions } from './dpop-options.js';
import { InvalidDpopProofException } from './dpop.exceptions.js';
import { normaliseHtu } from './htu.js';
import { PROOF_HEADERS, type ProofHeader } from './proof-headers.js';

/** Longest proof read: a PS256 proof with a 4096-bit key is about 1.9 KB. */
const MAX_PROOF_LENGTH = 8192;
/** Longest `jti` accepted (RFC 9449 §11.1: "reject … unnecessarily large `jti` values"). */
const MAX_JTI_LENGTH = 256;

/** The request a proof must have been made for. */
export interface ProofTarget {
  readonly proof: string;
  /** The request method, as received. */
  readonly method: string;
  /** The normalised `htu` this request must carry (see `expectedHtu`). */
  readonly htu: string;
  /** The access token sent with it: the proof's `ath` must be its hash. */
  readonly accessToken: string;
  /** `cnf.jkt` of that token: the proof key's thumbprint must be it (RFC 9449 §7.1). */
  readonly boundKey: string;
  readonly nowMs: number;
}

/** What a verified proof says. */
export interface VerifiedProof {
  /** RFC 7638 thumbprint of the proof key. */
  readonly jkt: string;
  readonly jti: string;
  /** `iat`, seconds. */
  readonly iat: number;
  readonly nonce?: unknown;
}

/**
 * The first millisecond (epoch ms) at which a proof with this `iat` is outside the window: the
 * window check accepts `|iat − now|` equal to the window, so a replay record must be held past
 * `(iat + window) × 1000` by a millisecond, or a replay at that exact millisecond passes (§11.1).
 */
export function proofWindowEndMs(iat: number, windowSeconds: number): number {
  return (iat + windowSeconds) * 1000 + 1;
}

/**
 * Checks a DPoP proof per RFC 9449 §4.3 (4)–(12), except the nonce (the caller's, §9) and the
 * replay record (§11.1): a compact JWS of canonical base64url, `typ` `dpop+jwt`, an allowed
 * asymmetric `alg`, a public `jwk` of the algorithm's key type whose thumbprint is the token's
 * `cnf.jkt` (checked before the signature) and that verifies the signature, `jti`
 * a string of at most 256 characters, `htm` = the method, `htu` = the request URI normalised,
 * `iat` within the window, and `ath` = base64url(SHA-256(access token)).
 * @throws InvalidTokenException `dpop_key_mismatch` when the proof key is not the token's (§7.1).
 * @throws InvalidDpopProofException whichever other check fails (one description for all: the
 *   client learns nothing about which check an attacker's proof failed).
 */
export function verifyDpopProof(target: ProofTarget, options: DpopOptions): VerifiedProof {
  const { proof } = target;
  const parts = proof.length > MAX_PROOF_LENGTH ? [] : proof.split('.');
  // The header's segment is checked when first read: a cached one was canonical (proof-headers.ts).
  if (parts.length !== 3 || !isCanonicalBase64url(parts[1]!) || !isCanonicalBase64url(parts[2]!)) throw new InvalidDpopProofException();
  const [headerSegment, payloadSegment, signature] = parts as [string, string, string];
  const header = PROOF_HEADERS.read(headerSegment);
  if (header === undefined || !options.algorithms.has(header.alg)) throw new InvalidDpopProofException();
  // The binding before the signature: whoever holds a stolen token must not make the API verify
  // signatures under keys of their choosing (an RSA key with a huge exponent costs ~13 ms a verify).
  if (header.jkt !== target.boundKey) throw new InvalidTokenException('dpop_key_mismatch');
  if (!signedBy(header, proof.slice(0, headerSegment.length + 1 + payloadSegment.length), signature)) throw new InvalidDpopProofException();
  const claims = readClaims(payloadSegment);
  const { jti, htm, htu, iat, ath, nonce } = claims;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw new InvalidDpopProofException();
  // Most agents send the normalised form already: compared first, parsed only when it differs.
  if (htm !== target.method || typeof htu !== 'string' || (htu !== target.htu && normaliseHtu(htu) !== target.htu)) throw new InvalidDpopProofException();
  if (typeof iat !== 'number' || !Number.isFinite(iat) || Math.abs(iat * 1000 - target.nowMs) > options.proofWindowSeconds * 1000) {
    throw new InvalidDpopProofException();
  }
  if (typeof ath !== 'string' || ath !== accessTokenHash(target.accessToken)) throw new InvalidDpopProofException();
  return { jkt: header.jkt, jti, iat, nonce };
}

/** True when `signature` (base64url) is the header's key's signature over `signingInput`; never throws. */
function signedBy(header: ProofHeader, signingInput: string, signature: string): boolean {
  try {
    return verify(header.hash, Buffer.from(signingInput), header.verifyWith, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}

/** The proof's claims: a JSON object, else the proof is refused. */
function readClaims(segment: string): Record<string, unknown> {
  try {
    const claims = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as unknown;
    if (typeof claims === 'object' && claims !== null && !Array.isArray(claims)) return claims as Record<string, unknown>;
  } catch {
    // refused below
  }
  throw new InvalidDpopProofException();
}

/**
 * `ath` of an access token (RFC 9449 §4.2): base64url(SHA-256(ASCII token)). An access token is
 * ASCII (a token68, RFC 6750 §2.1; the guard's are verified compact JWSs), so its UTF-8 bytes,
 * which the one-shot `crypto.hash` reads, are its ASCII ones; no Hash object per request.
 */
export function accessTokenHash(accessToken: string): string {
  return hash('sha256', accessToken, 'base64url');
}
