import { describe, expect, it } from '@jest/globals';
import { DpopKey } from './dpop-key.js';
import { accessTokenHash, verifyDpopProof } from './dpop-proof.js';
import { InvalidDpopProofException } from './dpop.exceptions.js';
import { InMemoryDpopReplayStore } from './dpop-replay-store.js';
import { ProofHeaders } from './proof-headers.js';
import { normaliseDpopOptions } from './dpop-options.js';
import { expectedHtu, normaliseHtu } from './htu.js';
import { jwkThumbprint } from './jwk-thumbprint.js';

describe('jwkThumbprint (RFC 7638)', () => {
  it('gives the thumbprint of the RFC 7638 §3.1 example key', () => {
    const jwk = {
      kty: 'RSA',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      e: 'AQAB',
      alg: 'RS256',
      kid: '2011-04-29',
    };
    expect(jwkThumbprint(jwk)).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });
  it('is undefined for an unknown key type or a missing member', () => {
    expect(jwkThumbprint({ kty: 'oct', k: 'abc' })).toBeUndefined();
    expect(jwkThumbprint({ kty: 'EC', crv: 'P-256', x: 'a' })).toBeUndefined();
    expect(jwkThumbprint({ kty: 'EC', crv: 'P-256', x: 'a', y: 1 })).toBeUndefined();
  });
});

describe('normaliseHtu (RFC 9449 §4.3 (9), RFC 3986 §6.2.2–6.2.3)', () => {
  it.each([
    ['https://api.example.com/orders', 'https://api.example.com/orders'],
    ['HTTPS://API.Example.COM:443/orders', 'https://api.example.com/orders'],
    ['https://api.example.com/orders?x=1#f', 'https://api.example.com/orders'],
    ['https://api.example.com', 'https://api.example.com/'],
    ['https://api.example.com/a/../orders', 'https://api.example.com/orders'],
    ['https://api.example.com/%6frders', 'https://api.example.com/orders'],
    ['https://api.example.com/a%2fb', 'https://api.example.com/a%2Fb'],
    ['http://127.0.0.1:80/x', 'http://127.0.0.1/x'],
  ])('%s → %s', (input, expected) => expect(normaliseHtu(input)).toBe(expected));
  it.each(['relative/path', 'ftp://api.example.com/x', 'https://user:pw@api.example.com/x', ''])('refuses %j', (input) => {
    expect(normaliseHtu(input)).toBeUndefined();
  });
});

describe('expectedHtu: the public origin + the routed path, normalised', () => {
  const paths = ['/orders', '/', '', 'orders', '/a/b/c.json', '/a//b', '/orders.Orders/Find', "/x-_~!$&'()*+,;=:@y", '/a/./b', '/a/../b', '/a/..',
    '/.', '/%6frders', '/a%2fb', '/a b', '/a"b', '/a<b>', '/a`b', '/a{b}', '/\u00e9', '/a\\b', '/a|b', '/a^b', '/.well-known/x', '/a/.b', '/a/..b'];
  it.each(['https://api.example.com', 'HTTPS://API.Example.COM:443', 'http://127.0.0.1:3000', 'https://[::1]:8443'])('is what normaliseHtu gives for every path under %s', (origin) => {
    for (const path of paths) {
      // A path whose normalisation would change its structure names nothing a proof can (H7): the app routed it as sent.
      const unroutable = path.includes('\\') || /\/(\.|%2e){1,2}(\/|$)/i.test(path);
      expect([path, expectedHtu(origin, path)]).toEqual([path, unroutable ? undefined : normaliseHtu(`${origin}${path.startsWith('/') ? path : `/${path}`}`)]);
    }
  });
  it('is undefined for an origin that is not an http(s) one', () => {
    expect(expectedHtu('ftp://api.example.com', '/x')).toBeUndefined();
    expect(expectedHtu('', '/x')).toBeUndefined();
  });
});

describe('normaliseDpopOptions', () => {
  it('is off by default and takes the short forms', () => {
    expect(normaliseDpopOptions(undefined)).toBeUndefined();
    expect(normaliseDpopOptions('required')).toMatchObject({ mode: 'required', algs: 'ES256 PS256', proofWindowSeconds: 60, replayStoreUnavailable: 'local' });
  });
  it.each([
    ['maybe'],
    [{ mode: 'allowed', algorithms: ['HS256'] }],
    [{ mode: 'allowed', algorithms: ['none'] }],
    [{ mode: 'allowed', algorithms: [] }],
    [{ mode: 'allowed', proofWindowSeconds: 301 }],
    [{ mode: 'allowed', replayStore: {} }],
    [{ mode: 'allowed', replayStoreUnavailable: 'ignore' }],
    [{ mode: 'allowed', nonce: { keys: [] } }],
  ])('refuses %j at bootstrap', (raw) => expect(() => normaliseDpopOptions(raw)).toThrow(TypeError));
});

describe('accessTokenHash (RFC 9449 §4.2)', () => {
  it('gives the `ath` of the RFC 9449 §7.1 example token', () => {
    expect(accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU')).toBe('fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
  });
});

describe('ProofHeaders: checked headers by segment, bounded', () => {
  const headerOf = (key: DpopKey, header?: Record<string, unknown>) => key.proof({ method: 'GET', url: 'https://api.example.com/x', header }).split('.')[0]!;
  it('gives each header its own key, however reads of several keys alternate', () => {
    const [a, b] = [DpopKey.generate('ES256'), DpopKey.generate('PS256')];
    const headers = new ProofHeaders();
    for (const key of [a, a, b, a, b, b, a]) expect(headers.read(headerOf(key))).toMatchObject({ jkt: key.thumbprint, alg: key.alg });
  });
  it('refuses a bad header read after a good one, and reads the good one again after 1024 others pushed it out', () => {
    const key = DpopKey.generate('ES256');
    const headers = new ProofHeaders();
    expect(headers.read(headerOf(key))?.jkt).toBe(key.thumbprint);
    expect(headers.read(Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256' })).toString('base64url'))).toBeUndefined();
    const other = DpopKey.generate('ES256');
    for (let i = 0; i < 1024; i++) expect(headers.read(headerOf(other, { kid: String(i) }))?.jkt).toBe(other.thumbprint);
    expect(headers.read(headerOf(key))?.jkt).toBe(key.thumbprint);
  });
});

describe('InMemoryDpopReplayStore (RFC 9449 §11.1)', () => {
  const T = 1_800_000_000_000;
  it('refuses a key held until it expires, then takes it again; a sweep drops expired records, never live ones', () => {
    const store = new InMemoryDpopReplayStore();
    expect(store.remember('a', T + 60_000, T)).toBe(true);
    expect(store.remember('b', T + 120_500, T)).toBe(true);
    expect(store.remember('a', T + 60_000, T + 59_000)).toBe(false);
    // Sweeps at most once a second: this one (a second after the last) drops `a`, expired at T + 60 s.
    expect(store.remember('c', T + 200_000, T + 60_000)).toBe(true);
    expect([store.size, store.remember('a', T + 120_000, T + 60_000)]).toEqual([2, true]);
    expect(store.remember('b', T + 120_500, T + 120_499)).toBe(false);
    expect(store.remember('d', T + 300_000, T + 121_500)).toBe(true); // drops `a` (again) and `b`
    expect(store.size).toBe(2);
    expect(store.remember('c', T + 200_000, T + 121_500)).toBe(false);
  });
  it('keeps a key remembered again after it expired, when the second of its first record is swept', () => {
    const store = new InMemoryDpopReplayStore();
    expect(store.remember('k', T + 1_000, T)).toBe(true);
    expect(store.remember('k', T + 61_000, T + 1_000)).toBe(true);
    expect(store.remember('x', T + 61_000, T + 2_000)).toBe(true); // sweeps the second `k` first expired in
    expect(store.remember('k', T + 61_000, T + 2_000)).toBe(false);
  });
  it('when full refuses new keys (fail closed) until records expire', () => {
    const store = new InMemoryDpopReplayStore(2);
    expect([store.remember('a', T + 5_000, T), store.remember('b', T + 9_000, T), store.remember('c', T + 9_000, T)]).toEqual([true, true, false]);
    expect(store.remember('c', T + 9_000, T + 4_000)).toBe(false);
    expect(store.remember('c', T + 15_000, T + 5_000)).toBe(true);
    expect(store.size).toBe(2);
  });

  it('records asked about but no longer written to (a shared store back after an outage) are dropped once expired', () => {
    const store = new InMemoryDpopReplayStore();
    for (let i = 0; i < 100; i++) expect(store.remember(`p${i}`, T + 60_000 + i, T)).toBe(true);
    // The shared store answers again: this instance's records are only asked about, never added to.
    expect(store.holds('p0', T + 30_000)).toBe(true);
    expect(store.size).toBe(100);
    expect(store.holds('p0', T + 60_050)).toBe(false);
    expect(store.size).toBe(99); // the second that ended (p0's); the rest expire in the next
    expect(store.holds('p99', T + 61_100)).toBe(false);
    expect(store.size).toBe(0);
  });
});

/** `segment` with its last character swapped for one that decodes to the same bytes (non-zero unused bits): not canonical base64url. */
function uncanonical(segment: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  if (segment.length % 4 < 2) throw new Error('a segment with unused bits is needed');
  return segment.slice(0, -1) + alphabet[alphabet.indexOf(segment.at(-1)!) + 1];
}

describe('proof segments are canonical base64url (one text per proof)', () => {
  const key = DpopKey.generate('ES256');
  const R = 'https://api.example.com';
  const options = normaliseDpopOptions({ mode: 'allowed', algorithms: ['ES256'] })!;
  const check = (proof: string) => () => verifyDpopProof({ proof, method: 'GET', htu: `${R}/x`, accessToken: 'token', boundKey: key.thumbprint, nowMs: Date.now() }, options);
  it('accepts the proof as signed, refuses it with a signature or claims segment that decodes the same but is not canonical', () => {
    // A `jti` whose length leaves the claims segment with unused bits.
    let proof = '';
    for (let n = 0; proof === '' || proof.split('.')[1]!.length % 4 < 2; n++) proof = key.proof({ method: 'GET', url: `${R}/x`, accessToken: 'token', jti: `j${'x'.repeat(n)}` });
    const [header, claims, signature] = proof.split('.') as [string, string, string];
    expect(check(proof)).not.toThrow();
    expect(check(`${header}.${claims}.${uncanonical(signature)}`)).toThrow(InvalidDpopProofException);
    expect(check(`${header}.${uncanonical(claims)}.${signature}`)).toThrow(InvalidDpopProofException);
  });
  it('refuses a header segment that is not canonical, also after its canonical form was read', () => {
    let header = '';
    for (let n = 0; header === '' || header.length % 4 < 2; n++) header = key.proof({ method: 'GET', url: `${R}/x`, header: { kid: 'k'.repeat(n) } }).split('.')[0]!;
    const headers = new ProofHeaders();
    expect(headers.read(header)?.jkt).toBe(key.thumbprint);
    expect(headers.read(uncanonical(header))).toBeUndefined();
  });
});
