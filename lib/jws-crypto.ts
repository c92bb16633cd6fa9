import { constants, sign as cryptoSign, verify as cryptoVerify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';

/** Hash of each asymmetric JWS algorithm. */
export const JWS_HASH: Record<string, string> = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512',
  PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512',
};

export function base64url(input: string | Buffer): string {
  return Buffer.from(input).toString('base64url');
}

/** Node's key options for a JWS algorithm: PSS padding for PS*, raw R‖S signatures for ES* (RFC 7518). */
function keyFor(key: KeyObject, alg: string) {
  return {
    key,
    ...(alg.startsWith('PS') ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 } : {}),
    ...(alg.startsWith('ES') ? { dsaEncoding: 'ieee-p1363' as const } : {}),
  };
}

/**
 * What `crypto.verify` takes to check a JWS signature of `alg` with `key` (RFC 7518 §3.3–3.5): the
 * `KeyObject` itself for RS*, with its padding or signature encoding otherwise. Made once per key,
 * when it is imported, rather than per token.
 */
export function verifyOptionsFor(key: KeyObject, alg: string): KeyObject | VerifyKeyObjectInput {
  return alg.startsWith('RS') ? key : keyFor(key, alg);
}

/**
 * Signs a compact JWS with an asymmetric key (client assertions, and the test zone's tokens).
 * Header and payload are taken as given (objects are JSON-encoded, strings used verbatim), so tests
 * can build hostile tokens a zone would never issue.
 */
export function signJws(
  header: Record<string, unknown> | string,
  payload: Record<string, unknown> | string,
  key: KeyObject,
  alg: string,
): string {
  const encode = (part: Record<string, unknown> | string) =>
    base64url(typeof part === 'string' ? part : JSON.stringify(part));
  const signingInput = `${encode(header)}.${encode(payload)}`;
  const hash = JWS_HASH[alg];
  if (!hash) throw new TypeError(`signJws: unsupported alg ${alg}`);
  return `${signingInput}.${base64url(cryptoSign(hash, Buffer.from(signingInput), keyFor(key, alg)))}`;
}

/**
 * The decoded header and claims of a compact JWS whose signature `keyOf(header)` verifies, else
 * undefined. For the test zone's own checks (its tokens, client assertions), not for the guard,
 * which verifies through passport-jwt with every rule of the catalogue.
 */
export function verifyJws(
  token: string,
  keyOf: (header: { alg?: unknown; kid?: unknown }) => KeyObject | undefined,
): { header: Record<string, unknown>; claims: Record<string, unknown> } | undefined {
  const [h, p, s, extra] = token.split('.');
  if (!h || !p || !s || extra !== undefined) return undefined;
  try {
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    const alg = header.alg;
    const key = keyOf(header);
    if (typeof alg !== 'string' || !JWS_HASH[alg] || !key) return undefined;
    if (!cryptoVerify(JWS_HASH[alg], Buffer.from(`${h}.${p}`), keyFor(key, alg), Buffer.from(s, 'base64url'))) return undefined;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as unknown;
    return typeof claims === 'object' && claims !== null ? { header, claims: claims as Record<string, unknown> } : undefined;
  } catch {
    return undefined;
  }
}
