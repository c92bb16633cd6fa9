import { createHash } from 'node:crypto';

/** The required members of each key type, in the lexicographic order RFC 7638 §3.2 hashes them. */
const REQUIRED_MEMBERS: Readonly<Record<string, readonly string[]>> = {
  EC: ['crv', 'kty', 'x', 'y'],
  RSA: ['e', 'kty', 'n'],
  OKP: ['crv', 'kty', 'x'],
};

/**
 * The RFC 7638 JWK SHA-256 thumbprint of a public key, base64url without padding: the value of
 * `cnf.jkt` in a DPoP-bound token (RFC 9449 §6.1).
 * @returns `undefined` when `jwk` is not an EC, RSA or OKP key whose required members are strings.
 * @publicApi
 */
export function jwkThumbprint(jwk: Readonly<Record<string, unknown>>): string | undefined {
  const members = typeof jwk.kty === 'string' ? REQUIRED_MEMBERS[jwk.kty] : undefined;
  if (members === undefined) return undefined;
  // JSON.stringify of strings is the RFC 7638 §3.3 form: no whitespace, members in the order given.
  let json = '{';
  for (let i = 0; i < members.length; i++) {
    const value = jwk[members[i]];
    if (typeof value !== 'string') return undefined;
    json += `${i === 0 ? '' : ','}"${members[i]}":${JSON.stringify(value)}`;
  }
  return createHash('sha256').update(`${json}}`).digest('base64url');
}
