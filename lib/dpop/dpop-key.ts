import { createPublicKey, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { signJws } from '../jws-crypto.js';
import { accessTokenHash } from './dpop-proof.js';
import { jwkThumbprint } from './jwk-thumbprint.js';

/** Algorithms a {@link DpopKey} signs with. */
export type DpopAlgorithm = 'ES256' | 'ES384' | 'ES512' | 'PS256' | 'PS384' | 'PS512' | 'RS256' | 'RS384' | 'RS512';

/** The request a proof is made for, and the optional parts of the proof. */
export interface DpopProofRequest {
  /** `htm`: the HTTP method, e.g. `POST`. */
  method: string;
  /** `htu`: the URL; its query and fragment are dropped (RFC 9449 §4.2). */
  url: string;
  /** The access token sent with the request: sets `ath` (RFC 9449 §4.2, required at a resource server). */
  accessToken?: string;
  /** A server nonce (`DPoP-Nonce`, RFC 9449 §8, §9). */
  nonce?: string;
  /** `iat`, seconds. @default now */
  iat?: number;
  /** `jti`. @default a random UUID */
  jti?: string;
  /** Claims to add or (with `undefined`) remove: for tests of hostile proofs. */
  claims?: Record<string, unknown>;
  /** Header members to add or (with `undefined`) remove: for tests of hostile proofs. */
  header?: Record<string, unknown>;
}

const NAMED_CURVE: Readonly<Record<string, string>> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

/**
 * A DPoP key pair held in memory (RFC 9449 §2): the client side of sender-constrained tokens. It
 * signs proofs (`DPoP` header values) and names itself by its RFC 7638 thumbprint, the `jkt` a
 * DPoP-bound token carries.
 *
 * @example
 * ```ts
 * const key = DpopKey.generate();
 * fetch(url, { headers: { Authorization: `DPoP ${token}`, DPoP: key.proof({ method: 'GET', url, accessToken: token }) } });
 * ```
 * @publicApi
 */
export class DpopKey {
  /** The public key as a JWK (`kty`, `crv`/`x`/`y` or `n`/`e`), as written in each proof. */
  readonly publicJwk: Readonly<Record<string, string>>;
  /** The RFC 7638 SHA-256 thumbprint, base64url: `cnf.jkt` of tokens bound to this key. */
  readonly thumbprint: string;

  private constructor(
    private readonly privateKey: KeyObject,
    publicKey: KeyObject,
    readonly alg: DpopAlgorithm,
  ) {
    const jwk = publicKey.export({ format: 'jwk' }) as Record<string, string>;
    const members: Record<string, string> = jwk.kty === 'EC' ? { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: 'RSA', n: jwk.n, e: jwk.e };
    this.publicJwk = Object.freeze(members);
    this.thumbprint = jwkThumbprint(this.publicJwk)!;
  }

  /** A new key pair. @default 'ES256' (RSA keys are 2048 bits) */
  static generate(alg: DpopAlgorithm = 'ES256'): DpopKey {
    const pair = alg.startsWith('ES')
      ? generateKeyPairSync('ec', { namedCurve: NAMED_CURVE[alg] })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
    return new DpopKey(pair.privateKey, pair.publicKey, alg);
  }

  /**
   * A key the app holds (e.g. from a KMS export or a file).
   * @throws TypeError when `privateKey` is not a private key of the algorithm's type.
   */
  static from(privateKey: KeyObject, alg: DpopAlgorithm): DpopKey {
    const expected = alg.startsWith('ES') ? 'ec' : 'rsa';
    if (privateKey?.type !== 'private' || privateKey.asymmetricKeyType !== expected) {
      throw new TypeError(`DpopKey.from: ${alg} needs a private ${expected.toUpperCase()} key`);
    }
    return new DpopKey(privateKey, createPublicKey(privateKey), alg);
  }

  /** A proof JWT for one request: `typ` `dpop+jwt`, this key's `jwk`, a fresh `jti` (RFC 9449 §4.2). */
  proof(request: DpopProofRequest): string {
    const url = new URL(request.url);
    const claims = dropUndefined({
      jti: request.jti ?? randomUUID(),
      htm: request.method,
      htu: `${url.origin}${url.pathname}`,
      iat: request.iat ?? Math.floor(Date.now() / 1000),
      ath: request.accessToken === undefined ? undefined : accessTokenHash(request.accessToken),
      nonce: request.nonce,
      ...request.claims,
    });
    const header = dropUndefined({ typ: 'dpop+jwt', alg: this.alg, jwk: this.publicJwk, ...request.header });
    return signJws(header, claims, this.privateKey, this.alg);
  }
}

function dropUndefined(record: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(record)) if (record[key] === undefined) delete record[key];
  return record;
}
