import { expect } from '@jest/globals';
import { createHmac, createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { base64url } from '../../lib/jws-crypto.js';
import type { DpopKey, DpopProofRequest } from '../../lib/dpop/dpop-key.js';
import { InMemoryDpopReplayStore, type DpopReplayStore } from '../../lib/index.js';
import { ERROR_DESCRIPTIONS } from '../../lib/resource-server/keycard.exceptions.js';
import { parseWwwAuthenticate } from '../../lib/www-authenticate.js';
import type { HttpAnswer } from './http.js';
import { R } from './forge.js';

/** The proof algorithms of mode H-1. */
export const ALGS = 'ES256 PS256';

/** `Authorization: DPoP <token>` and a proof for `method` `path` on the public origin `R`. */
export function dpopHeaders(key: DpopKey, token: string, proof: Partial<DpopProofRequest> & { path?: string } = {}): [string, string][] {
  const { path = '/orders', method = 'GET', ...rest } = proof;
  return [['Authorization', `DPoP ${token}`], ['DPoP', key.proof({ method, url: `${R}${path}`, accessToken: token, ...rest })]];
}

/** The challenges of an answer, by lower-cased scheme, each challenge's params in order. */
export function challengesOf(res: HttpAnswer): Map<string, ReadonlyMap<string, string>> {
  const value = res.headers['www-authenticate'];
  const parsed = typeof value === 'string' ? parseWwwAuthenticate(value) : undefined;
  expect(parsed).toBeDefined();
  return new Map(parsed!.map((c) => [c.scheme.toLowerCase(), c.params]));
}

const VOCABULARY = new Set<string>(Object.values(ERROR_DESCRIPTIONS));

/** What a DPoP-era refusal must show (catalogue H rows, INV1, INV2, INV7). */
export interface DpopRefusal {
  status?: number;
  /** The error on the DPoP challenge, or none. */
  dpopError?: string;
  /** The error on the Bearer challenge, or none. */
  bearerError?: string;
  /** False when no Bearer challenge may appear (mode `required`). @default true */
  bearer?: boolean;
  description?: string;
  /** Anything that must not appear in the answer or logs (tokens, proofs). */
  secrets?: readonly string[];
  logs?: readonly string[];
  algs?: string;
  prm?: string;
}

/** Asserts status, both challenges (error only on the scheme used, `algs`, `resource_metadata`), the fixed description and no leak. */
export function expectDpopRefusal(res: HttpAnswer, expected: DpopRefusal): void {
  expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: expected.status ?? 401 });
  const challenges = challengesOf(res);
  const dpop = challenges.get('dpop');
  expect(dpop?.get('algs')).toBe(expected.algs ?? ALGS);
  expect(dpop?.get('error')).toBe(expected.dpopError);
  const bearer = challenges.get('bearer');
  if (expected.bearer === false) expect(bearer).toBeUndefined();
  else expect(bearer?.get('error')).toBe(expected.bearerError);
  if (expected.prm !== undefined) {
    expect(dpop?.get('resource_metadata')).toBe(expected.prm);
    if (bearer !== undefined) expect(bearer.get('resource_metadata')).toBe(expected.prm);
  }
  const description = dpop?.get('error_description') ?? bearer?.get('error_description');
  if (expected.dpopError !== undefined || expected.bearerError !== undefined) {
    expect(description).toMatch(/^[\x20\x21\x23-\x5B\x5D-\x7E]+$/);
    expect(VOCABULARY.has(description!)).toBe(true);
    if (expected.description !== undefined) expect(description).toBe(expected.description);
    expect(res.json).toEqual({ error: expected.dpopError ?? expected.bearerError, error_description: description });
  } else {
    expect(description).toBeUndefined();
  }
  for (const secret of expected.secrets ?? []) {
    expect(res.text.includes(secret)).toBe(false);
    expect(JSON.stringify(res.headers).includes(secret)).toBe(false);
    expect((expected.logs ?? []).some((line) => line.includes(secret))).toBe(false);
  }
}

/** A compact JWS with any header, signed with HMAC or not at all: hostile proofs. */
export function forgedProof(header: Record<string, unknown>, claims: Record<string, unknown>, hmacKey?: string): string {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  return `${input}.${hmacKey === undefined ? '' : createHmac('sha256', hmacKey).update(input).digest('base64url')}`;
}

/**
 * The same compact JWS with one bit of its signature's first byte flipped. Rewriting the last
 * characters is not a tamper every time: the final base64url character carries spare bits, so
 * a rewrite that only touches them decodes to the same signature (about 1 run in 256 for ES256).
 */
export function tamperedSignature(jws: string): string {
  const [header, payload, signature] = jws.split('.');
  const bytes = Buffer.from(signature, 'base64url');
  bytes[0] ^= 0x01;
  return `${header}.${payload}.${bytes.toString('base64url')}`;
}

/** A replay store that counts what it holds, around the in-memory one: "nothing stored" is checkable. */
export class CountingReplayStore implements DpopReplayStore {
  readonly inner = new InMemoryDpopReplayStore();
  readonly keys: string[] = [];
  remember(key: string, expiresAtMs: number, nowMs: number): boolean {
    const fresh = this.inner.remember(key, expiresAtMs, nowMs);
    if (fresh) this.keys.push(key);
    return fresh;
  }
}

const bigOf = (b64: string) => BigInt(`0x${Buffer.from(b64, 'base64url').toString('hex') || '0'}`);
const b64Of = (n: bigint) => {
  const hex = n.toString(16);
  return Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex').toString('base64url');
};
const modulo = (a: bigint, m: bigint) => ((a % m) + m) % m;
/** `[gcd, x]` with `a·x ≡ gcd (mod b)`. */
function extendedGcd(a: bigint, b: bigint): [bigint, bigint] {
  let [x0, x1] = [1n, 0n];
  while (b !== 0n) {
    const q = a / b;
    [a, b] = [b, a % b];
    [x0, x1] = [x1, x0 - q * x1];
  }
  return [a, x0];
}

/**
 * A valid RSA-3072 private key whose public exponent is as long as its modulus (OpenSSL accepts
 * any exponent up to 3072-bit moduli): each signature check under it costs a private-key
 * operation, ~200 times an ordinary RSA verify. A hostile proof key.
 */
export function hugeExponentRsaKey(): KeyObject {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey.export({ format: 'jwk' }) as Record<string, string>;
  const [p, q] = [bigOf(jwk.p), bigOf(jwk.q)];
  const phi = (p - 1n) * (q - 1n);
  let e = 0n;
  while (e === 0n || extendedGcd(e, phi)[0] !== 1n) e = bigOf(randomBytes(383).toString('base64url')) | 1n;
  const d = modulo(extendedGcd(e, phi)[1], phi);
  const members = { n: p * q, e, d, p, q, dp: d % (p - 1n), dq: d % (q - 1n), qi: modulo(extendedGcd(q, p)[1], p) };
  return createPrivateKey({ key: { kty: 'RSA', ...Object.fromEntries(Object.entries(members).map(([k, v]) => [k, b64Of(v)])) }, format: 'jwk' });
}
