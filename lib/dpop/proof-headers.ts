import { createPublicKey, type JsonWebKey, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
import { JWS_HASH, verifyOptionsFor } from '../jws-crypto.js';
import { isCanonicalBase64url } from '../resource-server/compact-jws.js';
import { jwkThumbprint } from './jwk-thumbprint.js';

/** Proof headers remembered at once: an agent signs every proof with one key, so one header. */
const MAX_HEADERS = 1024;
/** JWK members of private keys (RFC 7518 §6.2.2, §6.3.2) and symmetric keys (§6.4). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** The curve each ES algorithm signs with (RFC 7518 §3.4). */
const CURVE_OF: Readonly<Record<string, string>> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

/** What a proof header says, once checked: the algorithm, the imported key and its thumbprint. */
export interface ProofHeader {
  readonly alg: string;
  readonly key: KeyObject;
  /** RFC 7638 thumbprint of the key. */
  readonly jkt: string;
  /** The hash of `alg` and what `crypto.verify` takes for it: made once per header, not per proof. */
  readonly hash: string;
  readonly verifyWith: KeyObject | VerifyKeyObjectInput;
}

/**
 * Checked proof headers by their encoded segment: every proof of one key carries the same header
 * (`typ`, `alg`, `jwk`), and importing an EC key costs as much as a signature check (the point is
 * validated). One entry per header, least recently used out first, never one per request.
 */
export class ProofHeaders {
  private readonly headers = new Map<string, ProofHeader>();
  /** The header read last, and its segment: an agent sends one header proof after proof, so most reads end here without hashing the segment for the map. */
  private last?: { readonly segment: string; readonly header: ProofHeader };

  /**
   * The checked header of `segment` (RFC 9449 §4.3 (4)–(7)): canonical base64url, `typ` exactly `dpop+jwt`, a string
   * `alg` of an asymmetric family, a `jwk` that is a public key of that algorithm's type (RSA of
   * 2048 to 4096 bits with an exponent of at most 32 bits), never a private or symmetric one. The caller checks `alg` against its allow-list.
   * @returns undefined when the header is not acceptable.
   */
  read(segment: string): ProofHeader | undefined {
    const { last } = this;
    // Still in the map: an eviction since (a flood of new headers) clears `last` too.
    if (last !== undefined && last.segment === segment) return last.header;
    const header = this.headers.get(segment) ?? checkedHeader(segment);
    if (header === undefined) return undefined;
    this.headers.delete(segment); // most recently used last
    if (this.headers.size >= MAX_HEADERS) this.evictOldest();
    this.headers.set(segment, header);
    this.last = { segment, header };
    return header;
  }

  private evictOldest(): void {
    const oldest = this.headers.keys().next().value!;
    this.headers.delete(oldest);
    if (this.last?.segment === oldest) this.last = undefined;
  }
}

function checkedHeader(segment: string): ProofHeader | undefined {
  if (!isCanonicalBase64url(segment)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  const { typ, alg, jwk } = (parsed ?? {}) as Record<string, unknown>;
  if (typ !== 'dpop+jwt' || typeof alg !== 'string' || !/^(ES|PS|RS)(256|384|512)$/.test(alg)) return undefined;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return undefined;
  const members = jwk as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((name) => name in members)) return undefined;
  const kty = alg.startsWith('ES') ? 'EC' : 'RSA';
  if (members.kty !== kty || (kty === 'EC' && members.crv !== CURVE_OF[alg])) return undefined;
  const jkt = jwkThumbprint(members);
  if (jkt === undefined) return undefined;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: members as JsonWebKey, format: 'jwk' });
  } catch {
    return undefined;
  }
  // RSA keys under 2048 bits are refused, as for access tokens (RFC 7518 §3.3); over 4096 bits, or
  // with a public exponent over 32 bits, each verify costs up to 200 ordinary ones (OpenSSL takes
  // any exponent up to a 3072-bit modulus): no client needs them.
  if (kty === 'RSA' && !reasonableRsaKey(key)) return undefined;
  return { alg, key, jkt, hash: JWS_HASH[alg]!, verifyWith: verifyOptionsFor(key, alg) };
}

const MAX_RSA_EXPONENT = 0xffff_ffffn;

function reasonableRsaKey(key: KeyObject): boolean {
  const details = key.asymmetricKeyDetails;
  const bits = details?.modulusLength ?? 0;
  return bits >= 2048 && bits <= 4096 && (details?.publicExponent ?? 0n) <= MAX_RSA_EXPONENT;
}

/** The headers of every module in the process: a header names one key whoever reads it. */
export const PROOF_HEADERS = new ProofHeaders();
