import { verify as cryptoVerify } from 'node:crypto';
import { MAX_TOKEN_LENGTH } from '../keycard.constants.js';
import type { VerificationKey } from '../zone/jwks-key-store.js';
import type { TrustedZone } from '../zone/trusted-zones.js';
import { parsePayload, type DecodedJws } from './compact-jws.js';
import { InvalidTokenException } from './keycard.exceptions.js';
import type { ProtectedResource } from './protected-resource.js';

/**
 * Where the signing input and the signature are written for `crypto.verify`, which reads them
 * synchronously and keeps neither: one buffer for every token, instead of two allocations from
 * Node's buffer pool per token (a new 8 KiB pool every few tokens; issue 24). Sized for the
 * longest token the extractor lets through (A29); a longer one gets buffers of its own.
 */
const SCRATCH = Buffer.allocUnsafeSlow(2 * MAX_TOKEN_LENGTH);

/**
 * One token on its way through the passport-jwt strategy: passport-jwt is handed this object in
 * place of the HTTP request (so nothing is ever attached to, or read from, the request itself),
 * and the strategy's key provider hands it back as the "key" once it holds what the signature
 * check needs. What each step learns is kept here for the next, so the token is decoded once
 * (issue 24): the header rules and the key choice read {@link jws}, the signature check its
 * signing input, the claim checks its payload; the verified-token cache reads {@link zone} and
 * {@link key}.
 */
export class TokenVerification {
  /** The token, decoded and shape-checked (set by the key provider). */
  jws?: DecodedJws;
  /** The zone the token's `iss` selected, once known. */
  zone?: TrustedZone;
  /** The zone key the signature is checked with, once selected (kept for the verified-token cache). */
  key?: VerificationKey;
  /** The payload, when it had to be read before the signature (several zones: its `iss` picks the zone). */
  claimsBeforeSignature?: Record<string, unknown>;

  constructor(
    readonly token: string,
    readonly resource: ProtectedResource,
  ) {}

  /**
   * The claims of {@link token}, once its signature verifies with {@link key}: one `crypto.verify`
   * over the signing input as sent (RFC 7515 §5.2), with the key imported at fetch time for the
   * very algorithm the header names (RFC 8725 §3.1: the key store selected it by `kid` and `alg`),
   * then the payload parsed — after the signature, never before it (catalogue J2).
   * @param token the token passport-jwt hands its verifier: must be this one.
   * @throws InvalidTokenException `signature_invalid` when it does not verify, `token_malformed`
   *   when the payload is not a JSON object (B26).
   */
  verifiedClaims(token: string): Record<string, unknown> {
    const { jws, key } = this;
    if (token !== this.token || jws === undefined || key === undefined || key.alg !== jws.header.alg) {
      throw new InvalidTokenException('signature_invalid');
    }
    const { signed, signature } = signatureInputs(token, jws.signedLength);
    let valid: boolean;
    try {
      valid = cryptoVerify(key.hash, signed, key.verifyWith, signature);
    } catch {
      valid = false; // e.g. an ES256 signature of the wrong length
    }
    if (!valid) throw new InvalidTokenException('signature_invalid');
    return this.claimsBeforeSignature ?? parsePayload(jws.payload);
  }
}

/**
 * The JWS Signing Input `<header>.<payload>` as sent (RFC 7515 §5.2) and the decoded signature of
 * `token`, whose signing input ends at `signedLength`, in {@link SCRATCH} (valid until the next call).
 * Only canonical base64url reaches here (decodeJws), so latin1 writes the signing input's exact bytes.
 */
function signatureInputs(token: string, signedLength: number): { signed: Buffer; signature: Buffer } {
  const encoded = token.slice(signedLength + 1);
  if (signedLength + encoded.length > SCRATCH.length) {
    return { signed: Buffer.from(token.slice(0, signedLength), 'latin1'), signature: Buffer.from(encoded, 'base64url') };
  }
  SCRATCH.write(token, 0, signedLength, 'latin1');
  const length = SCRATCH.write(encoded, signedLength, 'base64url');
  return { signed: SCRATCH.subarray(0, signedLength), signature: SCRATCH.subarray(signedLength, signedLength + length) };
}
