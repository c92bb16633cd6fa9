/**
 * Key selection and canonical token encoding (catalogue M17, M18, E16) over Express and Fastify: a
 * real Nest app against a TestZone whose JWKS is served as each row needs it.
 */
import { describe, expect, it } from '@jest/globals';
import { generateKeyPairSync, sign } from 'node:crypto';
import { TestZone, base64url, signJws, type ZoneKey } from '../lib/testing/index.js';
import { VerifiedTokenCache } from '../lib/resource-server/verified-token-cache.js';
import { expectOutcome, onScopedRoute, type Outcome } from './support/denials.js';
import { baseClaims, bearer, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, scopeOf, startApp } from './support/keycard-app.js';
import { zoneSuite } from './support/zone-suite.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The public JWK of a zone key as a zone publishes it, with `members` merged in. */
const publicJwk = (key: ZoneKey, members: Record<string, unknown> = {}) => ({
  ...(key.publicKey.export({ format: 'jwk' }) as Record<string, unknown>),
  kid: key.kid,
  alg: key.alg,
  use: 'sig',
  ...members,
});

/** An RSA encryption key's JWK under `kid` (RFC 7517 §4.2–4.3: `use` enc, `alg` RSA-OAEP). */
const encryptionJwk = (kid: string) => ({
  ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }) as Record<string, unknown>),
  kid,
  use: 'enc',
  alg: 'RSA-OAEP',
});

/** Every spelling of a segment's last character: same bits that carry data, any unused bits. */
function respellings(segment: string): string[] {
  const unusedBits = { 2: 4, 3: 2 }[segment.length % 4 as 2 | 3];
  if (unusedBits === undefined) throw new Error('this segment has no unused bits');
  const value = ALPHABET.indexOf(segment.at(-1)!);
  const kept = value & ~((1 << unusedBits) - 1);
  return Array.from({ length: 1 << unusedBits }, (_, low) => segment.slice(0, -1) + ALPHABET[kept | low]);
}

describe.each(ADAPTERS)('key selection and canonical tokens over %s', (adapter) => {
  const suite = zoneSuite();

  const start = async () => {
    suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: R, clockToleranceSeconds: 60 });
    return suite.api;
  };
  /** Sends the token to `/orders` and checks the outcome, the token counted as a secret. */
  const expectToken = async (token: string, outcome: Outcome) =>
    expectOutcome(await send(suite.api!.url, 'GET', '/orders', bearer(token)), onScopedRoute(outcome, scopeOf('GET', '/orders')), PRM, [token], suite.api!.logger.lines);
  /** T0 signed by `key` under its kid, with the header's `alg` set to `alg`. */
  const signedBy = (key: ZoneKey, alg = key.alg) =>
    signJws({ ...T0_HEADER, alg, kid: key.kid }, baseClaims(suite.zone), key.privateKey, alg);

  describe('M17 keys unusable for the token are set aside before any duplicate-kid judgement', () => {
    const signing = TestZone.generateKey('k1', 'RS256');
    it.each([
      ['signing key first', () => [publicJwk(signing), encryptionJwk('k1')]],
      ['encryption key first', () => [encryptionJwk('k1'), publicJwk(signing)]],
    ])('M17 kid k1 names an RS256 signing key and an RSA-OAEP encryption key, %s → RS256 token 200', async (_order, keys) => {
      suite.zone.jwksOverride = { keys: keys() };
      await start();
      await expectToken(signedBy(signing), '200');
      await expectToken(signedBy(signing), '200');
      // The encryption key is set aside with a note, never judged an ambiguity.
      expect(suite.api!.logger.lines.some((l) => l.includes('k1') && l.includes('use is not sig'))).toBe(true);
      expect(suite.api!.logger.lines.some((l) => l.includes('several'))).toBe(false);
    });

    it('M17 one kid for an RSA and an EC key (RFC 7517 §4.5): each verifies the tokens of its own algorithm → 200, 200', async () => {
      const rsa = TestZone.generateKey('k2', 'RS256');
      const ec = TestZone.generateKey('k2', 'ES256');
      suite.zone.jwksOverride = { keys: [publicJwk(ec), publicJwk(rsa)] };
      await start();
      await expectToken(signedBy(rsa), '200');
      await expectToken(signedBy(ec), '200');
      // A token whose signature only the other key could check is still refused.
      await expectToken(signJws({ ...T0_HEADER, alg: 'ES256', kid: 'k2' }, baseClaims(suite.zone), TestZone.generateKey('k2', 'ES256').privateKey, 'ES256'), '401 IT');
    });
  });

  describe('M17 E16 still holds for two keys usable for the token', () => {
    it('M17 (E16 still holds) two RS256 keys share kid k3, with an encryption key beside them → 401 IT, with an alert', async () => {
      const first = TestZone.generateKey('k3', 'RS256');
      const twin = TestZone.generateKey('k3', 'RS256');
      suite.zone.jwksOverride = { keys: [publicJwk(first), encryptionJwk('k3'), publicJwk(twin)] };
      await start();
      await expectToken(signedBy(first), '401 IT');
      await expectToken(signedBy(twin), '401 IT');
      expect(suite.api!.logger.lines.some((l) => l.includes('several RS256 keys with kid k3'))).toBe(true);
    });

    it('M17 (E16 still holds) kid k4 names an RSA key without alg and an RSA key with alg PS256: PS256 ambiguous → 401 IT, RS256 has one key → 200', async () => {
      const any = TestZone.generateKey('k4', 'RS256');
      const pss = TestZone.generateKey('k4', 'PS256');
      suite.zone.jwksOverride = { keys: [publicJwk(any, { alg: undefined }), publicJwk(pss)] };
      await start();
      await expectToken(signedBy(any, 'PS256'), '401 IT');
      await expectToken(signedBy(pss), '401 IT');
      await expectToken(signedBy(any, 'RS256'), '200');
    });
  });

  describe('M18 one token, one spelling (RFC 7515 §2, RFC 4648 §3.5)', () => {
    it('M18 the 16 spellings of an RS256 signature: the canonical one 200, the 15 others 401 IT; the verified-token cache holds one entry', async () => {
      await start();
      const cache = suite.api!.app.get(VerifiedTokenCache);
      const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone));
      const [header, payload, signature] = token.split('.');
      const spellings = respellings(signature);
      expect(spellings).toHaveLength(16);
      expect(spellings).toContain(signature);
      await expectToken(token, '200');
      expect(cache.size).toBe(0); // a token enters the cache on its second verification
      await expectToken(token, '200');
      expect(cache.size).toBe(1);
      for (const spelling of spellings.filter((s) => s !== signature)) {
        await expectToken(`${header}.${payload}.${spelling}`, '401 IT');
      }
      await expectToken(token, '200');
      expect(cache.size).toBe(1);
    });

    it('M18 an ES256 signature respelled → 401 IT; a signature with padding or a length of 1 mod 4 → 401 IT', async () => {
      await start();
      const token = zoneSigned(suite.zone, { ...T0_HEADER, alg: 'ES256', kid: 'ec1' }, baseClaims(suite.zone), 'ec1');
      const [header, payload, signature] = token.split('.');
      await expectToken(token, '200');
      await expectToken(token, '200'); // now cached (its second verification)
      const respelled = respellings(signature).find((s) => s !== signature)!;
      await expectToken(`${header}.${payload}.${respelled}`, '401 IT');
      await expectToken(`${token}==`, '401 IT');
      await expectToken(`${token}A`.slice(0, token.length - (signature.length % 4) + 1), '401 IT');
      expect(suite.api!.app.get(VerifiedTokenCache).size).toBe(1);
    });

    it.each(['header', 'payload'] as const)(
      'M18 a %s segment respelled with non-zero unused bits, signed by the zone as spelled → 401 IT',
      async (part) => {
        await start();
        const claims = baseClaims(suite.zone);
        // Grow the JSON until its encoding ends in a character that carries unused bits.
        let headerJson = JSON.stringify(T0_HEADER);
        let payloadJson = JSON.stringify(claims);
        const pad = (json: string) => {
          let padded = json;
          for (let n = 0; base64url(padded).length % 4 === 0; n++) padded = JSON.stringify({ ...JSON.parse(json), pad: 'x'.repeat(n) });
          return padded;
        };
        if (part === 'header') headerJson = pad(headerJson);
        else payloadJson = pad(payloadJson);
        const encoded = { header: base64url(headerJson), payload: base64url(payloadJson) };
        const canonical = `${encoded.header}.${encoded.payload}`;
        const respelled = respellings(encoded[part]).find((s) => s !== encoded[part])!;
        const input = part === 'header' ? `${respelled}.${encoded.payload}` : `${encoded.header}.${respelled}`;
        const rsSign = (text: string) => sign('sha256', Buffer.from(text), suite.zone.key('rs1').privateKey).toString('base64url');
        // Node's lenient decoder reads the respelled segment as the same bytes, so only the canonical check refuses it.
        expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(encoded[part], 'base64url'))).toBe(true);
        const signed = `${canonical}.${rsSign(canonical)}`;
        await expectToken(signed, '200');
        await expectToken(signed, '200'); // now cached (its second verification)
        await expectToken(`${input}.${rsSign(input)}`, '401 IT');
        expect(suite.api!.app.get(VerifiedTokenCache).size).toBe(1);
      },
    );
  });
});
