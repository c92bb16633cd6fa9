import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { verifyJws } from '../jws-crypto.js';
import { isCanonicalBase64url } from '../resource-server/compact-jws.js';
import type { DpopOptions } from './dpop-options.js';
import { InvalidDpopProofException } from './dpop.exceptions.js';
import { normaliseHtu } from './htu.js';
import { jwkThumbprint } from './jwk-thumbprint.js';

/** Longest proof read: a PS256 proof with a 4096-bit key is about 1.9 KB. */
const MAX_PROOF_LENGTH = 8192;
/** Longest `jti` accepted (RFC 9449 §11.1: "reject … unnecessarily large `jti` values"). */
const MAX_JTI_LENGTH = 256;
/** JWK members of private keys (RFC 7518 §6.2.2, §6.3.2) and symmetric keys (§6.4). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** The curve each ES algorithm signs with (RFC 7518 §3.4). */
const CURVE_OF: Readonly<Record<string, string>> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

/** The request a proof must have been made for. */
export interface ProofTarget {
  readonly proof: string;
  /** The request method, as received. */
  readonly method: string;
  /** The normalised `htu` this request must carry (see `expectedHtu`). */
  readonly htu: string;
  /** The access token sent with it: the proof's `ath` must be its hash. */
  readonly accessToken: string;
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
 * Checks a DPoP proof per RFC 9449 §4.3 (4)–(12), except the nonce (the caller's, §9) and the
 * replay record (§11.1): a compact JWS of canonical base64url, `typ` `dpop+jwt`, an allowed
 * asymmetric `alg`, a public `jwk` of the algorithm's key type that verifies the signature, `jti`
 * a string of at most 256 characters, `htm` = the method, `htu` = the request URI normalised,
 * `iat` within the window, and `ath` = base64url(SHA-256(access token)).
 * @throws InvalidDpopProofException whichever check fails (one description for all: the client
 *   learns nothing about which check an attacker's proof failed).
 */
export function verifyDpopProof(target: ProofTarget, options: DpopOptions): VerifiedProof {
  const { proof } = target;
  if (proof.length > MAX_PROOF_LENGTH || !proof.split('.').every(isCanonicalBase64url)) throw new InvalidDpopProofException();
  let jkt: string | undefined;
  const verified = verifyJws(proof, (header) => {
    const key = proofKey(header, options);
    jkt = key?.jkt;
    return key?.key;
  });
  if (verified === undefined || jkt === undefined) throw new InvalidDpopProofException();
  const { jti, htm, htu, iat, ath, nonce } = verified.claims;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw new InvalidDpopProofException();
  if (htm !== target.method || typeof htu !== 'string' || normaliseHtu(htu) !== target.htu) throw new InvalidDpopProofException();
  if (typeof iat !== 'number' || !Number.isFinite(iat) || Math.abs(iat * 1000 - target.nowMs) > options.proofWindowSeconds * 1000) {
    throw new InvalidDpopProofException();
  }
  if (typeof ath !== 'string' || ath !== accessTokenHash(target.accessToken)) throw new InvalidDpopProofException();
  return { jkt, jti, iat, nonce };
}

/** `ath` of an access token (RFC 9449 §4.2): base64url(SHA-256(ASCII token)). */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * The proof's key from its header (§4.3 (4)–(7)), or undefined: `typ` exactly `dpop+jwt`, an
 * allowed `alg`, and a `jwk` that is a public key of that algorithm's type, never a private or
 * symmetric one.
 */
function proofKey(header: Readonly<Record<string, unknown>>, options: DpopOptions): { key: KeyObject; jkt: string } | undefined {
  const { typ, alg, jwk } = header;
  if (typ !== 'dpop+jwt' || typeof alg !== 'string' || !options.algorithms.has(alg)) return undefined;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return undefined;
  const members = jwk as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((name) => name in members)) return undefined;
  const expectedKty = alg.startsWith('ES') ? 'EC' : 'RSA';
  if (members.kty !== expectedKty || (expectedKty === 'EC' && members.crv !== CURVE_OF[alg])) return undefined;
  const jkt = jwkThumbprint(members);
  if (jkt === undefined) return undefined;
  try {
    const key = createPublicKey({ key: members as JsonWebKey, format: 'jwk' });
    // RSA keys under 2048 bits are refused, as for access tokens (RFC 7518 §3.3).
    if (expectedKty === 'RSA' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return undefined;
    return { key, jkt };
  } catch {
    return undefined;
  }
}
