import { sign as cryptoSign, type KeyObject } from 'node:crypto';

/** Hash of each asymmetric JWS algorithm. */
export const JWS_HASH: Record<string, string> = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512',
  PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512',
};

export function base64url(input: string | Buffer): string {
  return Buffer.from(input).toString('base64url');
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
  const signature = cryptoSign(hash, Buffer.from(signingInput), {
    key,
    ...(alg.startsWith('PS') ? { padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: Number(alg.slice(2)) / 8 } : {}),
    ...(alg.startsWith('ES') ? { dsaEncoding: 'ieee-p1363' as const } : {}),
  });
  return `${signingInput}.${base64url(signature)}`;
}

