/**
 * The resource-server half over HTTP: a real Nest app (Express and Fastify) against a real local
 * zone on loopback. Each test is named by its row in ../shared/security-catalogue.md.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TestZone, base64url } from '../lib/testing/index.js';
import { expectOutcome, onScopedRoute, type Outcome } from './support/denials.js';
import { baseClaims, bearer, hmacToken, PRM, R, T0_HEADER, unsigned, zoneSigned } from './support/forge.js';
import { startCountingListener } from './support/counting-listener.js';
import { send, sendRaw } from './support/http.js';
import { ADAPTERS, scopeOf, startApp, type RunningApp } from './support/keycard-app.js';


describe.each(ADAPTERS)('resource server over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let attacker: Awaited<ReturnType<typeof startCountingListener>>;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    attacker = await startCountingListener();
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 60 });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
    await attacker?.close();
  });

  /** Sends `headers` to `path` and checks the outcome, with every token sent counted as a secret. */
  async function expectRequest(headers: [string, string][], outcome: Outcome, path = '/orders', method = 'GET', body?: string) {
    const res = await send(api.url, method, path, headers, body);
    const secrets = headers.filter(([n]) => n.toLowerCase() === 'authorization').map(([, v]) => v.replace(/^\S+\s+/, '')).filter((t) => t.length > 20);
    expectOutcome(res, onScopedRoute(outcome, scopeOf(method, path)), PRM, secrets, api.logger.lines);
    return res;
  }
  const expectToken = (token: string, outcome: Outcome, path?: string) => expectRequest(bearer(token), outcome, path);
  const t0 = (claims: Record<string, unknown> = {}) => zoneSigned(zone, T0_HEADER, baseClaims(zone, claims));

  describe('A. HTTP-level input', () => {
    it('A1 no Authorization → 401∅', () => expectRequest([], '401∅'));
    it('A2 empty Authorization → 401∅', () => expectRequest([['Authorization', '']], '401∅'));
    it('A3 Basic → 401∅', () => expectRequest([['Authorization', 'Basic dXNlcjpwYXNz']], '401∅'));
    it.each(['JWT', 'Token', 'Digest'])('A4 %s scheme with T0 → 401∅', (scheme) =>
      expectRequest([['Authorization', `${scheme} ${t0()}`]], '401∅'));
    it('A5 lowercase bearer → 200', () => expectRequest([['Authorization', `bearer ${t0()}`]], '200'));
    it.each(['BEARER', 'BeArEr'])('A6 %s → 200', (scheme) => expectRequest([['Authorization', `${scheme} ${t0()}`]], '200'));
    it('A7 Bearer + several spaces → 200 (Q1)', () => expectRequest([['Authorization', `Bearer   ${t0()}`]], '200'));
    it('A8 Bearer<TAB>token → 401 IT', () => expectRequest([['Authorization', `Bearer\t${t0()}`]], '401 IT'));
    it.each(['Bearer', 'Bearer '])('A9 %j without token → 401 IT (Q2)', (value) => expectRequest([['Authorization', value]], '401 IT'));
    it.each(['extra', 'a b'])('A10 trailing junk %j → 401 IT', (junk) => expectRequest([['Authorization', `Bearer ${t0()} ${junk}`]], '401 IT'));
    it('A11 comma-joined bearer list → 401 IT', () => expectRequest([['Authorization', `Bearer ${t0()},Bearer ${t0()}`]], '401 IT'));
    it('A12 two Authorization lines → 400 IR', () =>
      expectRequest([['Authorization', `Bearer ${t0()}`], ['Authorization', `Bearer ${t0()}`]], '400 IR'));
    it('A13 two identical Authorization lines → 400 IR', () => {
      const token = t0();
      return expectRequest([['Authorization', `Bearer ${token}`], ['Authorization', `Bearer ${token}`]], '400 IR');
    });
    it('A14 Bearer + DPoP lines → 400 IR', () => {
      const token = t0();
      return expectRequest([['Authorization', `Bearer ${token}`], ['Authorization', `DPoP ${token}`]], '400 IR');
    });
    it('A15 header token + form access_token (body method off) → 200 (Q3)', () =>
      expectRequest(
        [...bearer(t0({ scope: 'orders:read orders:write' })), ['Content-Type', 'application/x-www-form-urlencoded']],
        '200', '/orders', 'POST', `access_token=${t0({ scope: 'admin' })}`,
      ));
    it('A16 query access_token only → 401∅', () => expectRequest([], '401∅', `/orders?access_token=${t0()}`));
    it('A17 header + query access_token → 200, decided on the header (Q4)', () =>
      expectRequest(bearer(t0()), '200', `/orders?access_token=${t0({ scope: '' })}`));
    it('A18 form body token only → 401∅', () =>
      expectRequest([['Content-Type', 'application/x-www-form-urlencoded']], '401∅', '/orders', 'POST', `access_token=${t0()}`));
    it('A24 query arrays/objects → 401∅', async () => {
      await expectRequest([], '401∅', '/orders?access_token[]=a&access_token[]=b');
      await expectRequest([], '401∅', '/orders?access_token[x]=y');
    });
    it('A25 non-ASCII in the token → 401 IT', () => expectRequest([['Authorization', `Bearer ${t0()}é`]], '401 IT'));
    it.each(['\x00', '\x08'])('A26 CTL %j in the header → Node answers 400, no challenge', async (ctl) => {
      const res = await sendRaw(api.url, `GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ab${ctl}cd\r\nConnection: close\r\n\r\n`);
      expect(res.status).toBe(400);
      expect(res.text.toLowerCase()).not.toContain('www-authenticate');
    });
    it('A27 obs-fold → Node answers 400, no challenge', async () => {
      const res = await sendRaw(api.url, `GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n ${t0()}\r\nConnection: close\r\n\r\n`);
      expect(res.status).toBe(400);
      expect(res.text.toLowerCase()).not.toContain('www-authenticate');
    });
    it('A28 Authorization over 16 KiB → Node answers 431, no challenge', async () => {
      const res = await sendRaw(api.url, `GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'a'.repeat(17_000)}\r\nConnection: close\r\n\r\n`);
      expect(res.status).toBe(431);
      expect(res.text.toLowerCase()).not.toContain('www-authenticate');
    });
    it('A31 Host carrying a path or fragment: the configured resource is used, nothing built from Host', async () => {
      for (const host of ['api.example.com/evil?', 'api.example.com#frag']) {
        await expectRequest([['Host', host]], '401∅');
      }
    });
    it('A29 token over 8192 chars → 401 IT', () => expectRequest([['Authorization', `Bearer ${'a'.repeat(9000)}`]], '401 IT'));
    it('A30 16 000 chars without whitespace → 401∅ (linear parser)', () =>
      expectRequest([['Authorization', 'x'.repeat(16_000)]], '401∅'));
    it('A32 X-Forwarded-Host is ignored', () =>
      expectRequest([['X-Forwarded-Host', 'evil.example']], '401∅'));
    it('A33 CORS preflight is not challenged', async () => {
      const res = await send(api.url, 'OPTIONS', '/orders', [['Origin', 'https://app.example'], ['Access-Control-Request-Method', 'GET']]);
      expect(res.status).not.toBe(401);
      expect(res.headers['www-authenticate']).toBeUndefined();
    });
    it('A34 a browser-origin 401 exposes WWW-Authenticate', async () => {
      const res = await expectRequest([['Origin', 'https://app.example']], '401∅');
      expect(res.headers['access-control-expose-headers']).toMatch(/WWW-Authenticate/i);
    });
    it('A35 iss/aud with CRLF → 401 IT, no injected header', async () => {
      const res = await expectToken(t0({ iss: `${zone.issuer}"\r\nSet-Cookie: x=1` }), '401 IT');
      expect(res.headers['set-cookie']).toBeUndefined();
      const res2 = await expectToken(t0({ aud: `${R}"\r\nSet-Cookie: x=1` }), '401 IT');
      expect(res2.headers['set-cookie']).toBeUndefined();
    });
    it('A36 HEAD without a token → 401∅ (with the route\'s scope, Q12)', async () => {
      const res = await send(api.url, 'HEAD', '/orders');
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe(`Bearer scope="orders:read", resource_metadata="${PRM}"`);
    });
  });

  describe('B. JWS structure, algorithm and key attacks', () => {
    it('B1 alg none, empty signature → 401 IT, no JWKS fetch', async () => {
      const before = zone.counts.jwks;
      await expectToken(`${unsigned({ alg: 'none', typ: 'at+jwt' }, baseClaims(zone))}.`, '401 IT');
      expect(zone.counts.jwks - before).toBe(0);
    });
    it.each(['None', 'NONE', 'nOnE'])('B2 alg %s → 401 IT', (alg) =>
      expectToken(`${unsigned({ alg, typ: 'at+jwt' }, baseClaims(zone))}.`, '401 IT'));
    it('B3 alg none with a copied signature → 401 IT', () => {
      const signature = t0().split('.')[2];
      return expectToken(`${unsigned({ alg: 'none', kid: 'rs1' }, baseClaims(zone))}.${signature}`, '401 IT');
    });
    it.each([[undefined], [null], [123], [['RS256']], ['']])('B4 alg %j → 401 IT', (alg) => {
      const signature = t0().split('.')[2];
      return expectToken(`${unsigned({ alg, kid: 'rs1' }, baseClaims(zone))}.${signature}`, '401 IT');
    });
    it('B5 alg rs256 (lowercase) → 401 IT', () => expectToken(zoneSigned(zone, { ...T0_HEADER, alg: 'rs256' }, baseClaims(zone), 'rs1', 'RS256'), '401 IT'));
    it('B6 RS→HS key confusion with the zone public key (PEM, PEM\\n, DER, JWK) → 401 IT, JWKS#≤1', async () => {
      const before = zone.counts.jwks;
      const publicKey = zone.key('rs1').publicKey;
      const pem = publicKey.export({ format: 'pem', type: 'spki' }) as string;
      const secrets = [pem, pem.trimEnd(), publicKey.export({ format: 'der', type: 'spki' }), JSON.stringify(publicKey.export({ format: 'jwk' }))];
      for (const secret of secrets) {
        await expectToken(hmacToken({ alg: 'HS256', typ: 'at+jwt', kid: 'rs1' }, baseClaims(zone), secret), '401 IT');
      }
      expect(zone.counts.jwks - before).toBeLessThanOrEqual(1);
    });
    it('B7 HS256 with a blank secret → 401 IT', () => expectToken(hmacToken({ alg: 'HS256', kid: 'rs1' }, baseClaims(zone), ''), '401 IT'));
    it('B8 HS256 with a common secret → 401 IT', () => expectToken(hmacToken({ alg: 'HS256', kid: 'rs1' }, baseClaims(zone), 'secret'), '401 IT'));
    it('B9 psychic signatures for ES256 (zeros, r=s=n, DER zero) → 401 IT', async () => {
      const input = unsigned({ alg: 'ES256', typ: 'at+jwt', kid: 'ec1' }, baseClaims(zone));
      const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
      for (const signature of [Buffer.alloc(64), Buffer.concat([n, n]), Buffer.from('3006020100020100', 'hex')]) {
        await expectToken(`${input}.${base64url(signature)}`, '401 IT');
      }
    });
    it('B10 ES256 signature in DER instead of raw R||S → 401 IT', async () => {
      const input = unsigned({ alg: 'ES256', typ: 'at+jwt', kid: 'ec1' }, baseClaims(zone));
      const der = sign('sha256', Buffer.from(input), zone.key('ec1').privateKey);
      await expectToken(`${input}.${base64url(der)}`, '401 IT');
    });
    it('B11 null signature h.p. → 401 IT', () => expectToken(`${unsigned(T0_HEADER, baseClaims(zone))}.`, '401 IT'));
    it('B12 signature with the last 4 chars removed → 401 IT', () => expectToken(t0().slice(0, -4), '401 IT'));
    it('B13 tampered payload with the original signature → 401 IT', () => {
      const [h, , s] = t0().split('.');
      return expectToken(`${h}.${base64url(JSON.stringify(baseClaims(zone, { sub: 'admin', scope: 'orders:read admin' })))}.${s}`, '401 IT');
    });
    it('B14 tampered header with the original signature → 401 IT', async () => {
      const [, p, s] = t0().split('.');
      await expectToken(`${base64url(JSON.stringify({ ...T0_HEADER, typ: 'JWT' }))}.${p}.${s}`, '401 IT');
      await expectToken(`${base64url(JSON.stringify({ ...T0_HEADER, kid: 'ec1' }))}.${p}.${s}`, '401 IT');
    });
    it('B15 embedded attacker jwk → 401 IT', () => {
      const attackerKey = TestZone.generateKey('rs1', 'RS256');
      const jwk = attackerKey.publicKey.export({ format: 'jwk' });
      return expectToken(zoneSignedWith(attackerKey, { ...T0_HEADER, jwk }), '401 IT');
    });
    it('B16 jku spoof → 401 IT, no request to the jku host', async () => {
      const attackerKey = TestZone.generateKey('rs1', 'RS256');
      await expectToken(zoneSignedWith(attackerKey, { ...T0_HEADER, jku: `${attacker.url}/jwks.json` }), '401 IT');
      expect(attacker.hits()).toBe(0);
    });
    it('B18 algorithm/key mismatch (ES256 with rs1, RS256 with ec1) → 401 IT', async () => {
      await expectToken(zoneSigned(zone, { ...T0_HEADER, alg: 'ES256' }, baseClaims(zone), 'ec1', 'ES256').replace(/^[^.]+/, base64url(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'rs1' }))), '401 IT');
      await expectToken(zoneSigned(zone, { alg: 'ES256', typ: 'at+jwt', kid: 'rs1' }, baseClaims(zone), 'ec1', 'ES256'), '401 IT');
      await expectToken(zoneSigned(zone, { alg: 'RS256', typ: 'at+jwt', kid: 'ec1' }, baseClaims(zone), 'rs1', 'RS256'), '401 IT');
    });
    it('B19 PS256 with rs1 whose JWK says RS256 → 401 IT', () =>
      expectToken(zoneSigned(zone, { ...T0_HEADER, alg: 'PS256' }, baseClaims(zone), 'rs1', 'PS256'), '401 IT'));
    it('B20 unknown crit → 401 IT', () =>
      expectToken(zoneSigned(zone, { ...T0_HEADER, crit: ['exp-ext'], 'exp-ext': 1 }, baseClaims(zone)), '401 IT'));
    it.each(['h.p', 'h.p.s.x', 'a.b.c.d.e', '.....', 'abc'])('B23 segments %j → 401 IT', (token) => expectToken(token, '401 IT'));
    it('B23 a 5-segment JWE built from T0 parts → 401 IT', () => {
      const [h, p, s] = t0().split('.');
      return expectToken(`${h}.${p}.${s}.${s}.${s}`, '401 IT');
    });
    it('B24 header not base64url/JSON, or JSON that is not an object → 401 IT', async () => {
      const [, p, s] = t0().split('.');
      await expectToken(`!!!notbase64!!!.${p}.${s}`, '401 IT');
      for (const header of ['[]', '1', '"RS256"', 'null', '{']) await expectToken(`${base64url(header)}.${p}.${s}`, '401 IT');
    });
    it('B25 padding, +, / or appended junk in a segment → 401 IT', async () => {
      const [h, p, s] = t0().split('.');
      for (const token of [`${h}=.${p}.${s}`, `${h}.${p}.${s}=`, `${h}.${p}.${s}==`, `${h}.${p}+.${s}`, `${h}.${p}/.${s}`]) {
        await expectToken(token, '401 IT');
      }
    });
    it.each(['"str"', '1', '[]', 'null'])('B26 payload %s → 401 IT', (payload) =>
      expectToken(zoneSigned(zone, T0_HEADER, payload), '401 IT'));
    it.each(['{', '{"sub":1', ' {"a":1} x', '\t[1]'])('B26 payload %j that is not a JSON object, signed by the zone, typ JWT or at+jwt → 401 IT', async (payload) => {
      await expectToken(zoneSigned(zone, T0_HEADER, payload), '401 IT');
      await expectToken(zoneSigned(zone, { ...T0_HEADER, typ: 'JWT' }, payload), '401 IT');
    });
    it('B17 x5u / x5c headers are never followed or trusted → 401 IT, no outbound request', async () => {
      const attackerKey = TestZone.generateKey('rs1', 'RS256');
      await expectToken(zoneSignedWith(attackerKey, { ...T0_HEADER, x5u: `${attacker.url}/cert.pem` }), '401 IT');
      await expectToken(zoneSignedWith(attackerKey, { ...T0_HEADER, x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'] }), '401 IT');
      expect(attacker.hits()).toBe(0);
    });
    it('B21 b64:false with crit:["b64"] → 401 IT', () =>
      expectToken(zoneSigned(zone, { ...T0_HEADER, b64: false, crit: ['b64'] }, baseClaims(zone)), '401 IT'));
    it('B22 cty:"JWT" (nested token) → 401 IT', () => expectToken(zoneSigned(zone, { ...T0_HEADER, cty: 'JWT' }, baseClaims(zone)), '401 IT'));
    it('B27 payload with invalid UTF-8 (overlong C0 AF), signed by the zone → 401 IT', () => {
      const json = Buffer.from(JSON.stringify(baseClaims(zone, { sub: 'XX' })));
      const at = json.indexOf('XX');
      json[at] = 0xc0;
      json[at + 1] = 0xaf;
      const input = `${base64url(JSON.stringify(T0_HEADER))}.${base64url(json)}`;
      return expectToken(`${input}.${base64url(sign('sha256', Buffer.from(input), zone.key('rs1').privateKey))}`, '401 IT');
    });
    it('B28 __proto__ / constructor / toString claims are plain data: no scope granted, no prototype change', async () => {
      const claims = JSON.stringify(baseClaims(zone, { scope: 'orders:read' })).replace(/^\{/, '{"__proto__":{"scope":"admin"},"constructor":{"prototype":{"polluted":1}},"toString":"x",');
      const token = zoneSigned(zone, T0_HEADER, claims);
      await expectToken(token, '200');
      await expectToken(token, '403:admin', '/admin');
      expect(({} as Record<string, unknown>).scope).toBeUndefined();
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
    it('B29 duplicate members: the last one wins, for key selection and verification alike', async () => {
      const claims = JSON.stringify(baseClaims(zone)).replace(/^\{/, '{"iss":"https://evil.example",');
      await expectToken(zoneSigned(zone, T0_HEADER, claims), '200');
      const header = '{"alg":"none","alg":"RS256","typ":"at+jwt","kid":"rs1"}';
      await expectToken(zoneSigned(zone, header, baseClaims(zone), 'rs1', 'RS256'), '200');
    });
    it('B30 deeply nested JSON within the size cap → 401 IT, not 500', () => {
      const nested = `{"sub":${'['.repeat(2500)}${']'.repeat(2500)}}`;
      return expectToken(`${base64url(JSON.stringify(T0_HEADER))}.${base64url(nested)}.${'A'.repeat(342)}`, '401 IT');
    });
    it.each(['', '../../../../../../dev/null', '/dev/null', '/invalid_path', '|sleep 10', "x' UNION SELECT '1';--", 'k'.repeat(300), 0, {}, ['rs1']])(
      'B31 kid injection %j signed HS256 → 401 IT, JWKS#≤1',
      async (kid) => {
        const before = zone.counts.jwks;
        await expectToken(hmacToken({ alg: 'HS256', typ: 'at+jwt', kid }, baseClaims(zone), kid === '/dev/null' ? '' : '1'), '401 IT');
        expect(zone.counts.jwks - before).toBeLessThanOrEqual(1);
      },
    );
    it('B33 dependency floor: jsonwebtoken ≥ 9 (hostile key toString not reachable: keys never come from input)', () => {
      const { version } = JSON.parse(readFileSync(new URL('../node_modules/jsonwebtoken/package.json', import.meta.url), 'utf8')) as { version: string };
      expect(Number(version.split('.')[0])).toBeGreaterThanOrEqual(9);
    });
  });

  describe('C. Claim validation', () => {
    it('C1 typ absent → 200 by default', () => expectToken(zoneSigned(zone, { alg: 'RS256', kid: 'rs1' }, baseClaims(zone)), '200'));
    it.each(['JWT', 'jwt'])('C2 typ %s → 200 by default', (typ) => expectToken(zoneSigned(zone, { ...T0_HEADER, typ }, baseClaims(zone)), '200'));
    it.each(['dpop+jwt', 'id_token+jwt', 'at+jwt; x=y', 'vnd.kc.su+jwt'])('C2 typ %s → 401 IT', (typ) =>
      expectToken(zoneSigned(zone, { ...T0_HEADER, typ }, baseClaims(zone)), '401 IT'));
    it.each(['at+JWT', 'AT+JWT', 'application/at+jwt', 'Application/AT+JWT'])('C3 typ %s → 200', (typ) =>
      expectToken(zoneSigned(zone, { ...T0_HEADER, typ }, baseClaims(zone)), '200'));
    it('C4 iss with a trailing slash → 401 IT', () => expectToken(t0({ iss: `${zone.issuer}/` }), '401 IT'));
    it('C5 iss of another scheme, case or tenant → 401 IT', async () => {
      await expectToken(t0({ iss: zone.issuer.replace('http:', 'https:') }), '401 IT');
      await expectToken(t0({ iss: zone.issuer.toUpperCase() }), '401 IT');
      await expectToken(t0({ iss: `${zone.issuer}/tenant2` }), '401 IT');
    });
    it.each([[undefined], [42], [['x']]])('C6 iss %j → 401 IT', (iss) => expectToken(t0({ iss }), '401 IT'));
    it('C7 aud missing → 401 IT', () => expectToken(t0({ aud: undefined }), '401 IT'));
    it('C8 aud of another resource on the same host → 401 IT', () => expectToken(t0({ aud: `${R}/other` }), '401 IT'));
    it('C9 aud array containing R → 200', () => expectToken(t0({ aud: ['https://x', R] }), '200'));
    it.each([[['https://x']], [''], [['']], ['HTTPS://API.EXAMPLE.COM'], [123]])('C10 aud %j → 401 IT', (aud) => expectToken(t0({ aud }), '401 IT'));
    // Boundary rows (±1 s around the leeway) run on a frozen module clock: a slow machine must not
    // move a token across the boundary between minting it and judging it.
    let frozenSeconds = 0;
    const now = () => frozenSeconds;
    beforeEach(() => {
      frozenSeconds = Math.floor(Date.now() / 1000);
      api.clock.frozenAtMs = frozenSeconds * 1000 + 500;
    });
    afterEach(() => {
      api.clock.frozenAtMs = undefined;
    });
    it('C11 exp missing → 401 IT', () => expectToken(t0({ exp: undefined }), '401 IT'));
    it('C12 exp = now − 59 → 200 (inside leeway)', () => expectToken(t0({ exp: now() - 59, iat: now() - 120 }), '200'));
    it('C13 exp = now − 61 → 401 IT', () => expectToken(t0({ exp: now() - 61, iat: now() - 120 }), '401 IT'));
    it.each([['9999999999'], [null], [true]])('C14 exp %j → 401 IT', (exp) => expectToken(t0({ exp }), '401 IT'));
    it('C15 nbf = now + 59 → 200, now + 61 → 401 IT', async () => {
      await expectToken(t0({ nbf: now() + 59 }), '200');
      await expectToken(t0({ nbf: now() + 61 }), '401 IT');
    });
    it('C16 nbf non-numeric → 401 IT', () => expectToken(t0({ nbf: 'soon' }), '401 IT'));
    it('C17 iat missing → 401 IT', () => expectToken(t0({ iat: undefined }), '401 IT'));
    it('C18 iat = now + 61 → 401 IT, now + 59 → 200', async () => {
      await expectToken(t0({ iat: now() + 61 }), '401 IT');
      await expectToken(t0({ iat: now() + 59 }), '200');
    });
    it.each([[undefined], [7], ['']])('C19 sub %j → 401 IT', (sub) => expectToken(t0({ sub }), '401 IT'));
    it.each([[undefined], [7], [{}]])('C20 client_id %j → 401 IT', (client_id) => expectToken(t0({ client_id }), '401 IT'));
    it.each([[undefined], [7], [null]])('C21 jti %j → 401 IT', (jti) => expectToken(t0({ jti }), '401 IT'));
    it('C22 an ID token of the same zone → 401 IT', () =>
      expectToken(zoneSigned(zone, { alg: 'RS256', typ: 'JWT', kid: 'rs1' }, baseClaims(zone, { aud: 'cli-1', nonce: 'n', at_hash: 'x' })), '401 IT'));
    it('C24 iss of an attacker host → 401 IT, no request to it', async () => {
      await expectToken(t0({ iss: attacker.url }), '401 IT');
      expect(attacker.hits()).toBe(0);
    });
    it('C25 iss not in authorization_servers → 401 IT', () => expectToken(t0({ iss: 'https://other-zone.example' }), '401 IT'));
    it('C26 cnf.jkt sent as Bearer → 401 IT (Q10)', () => expectToken(t0({ cnf: { jkt: 'abc' } }), '401 IT'));
    it('C27 cnf x5t#S256 without a certificate → 401 IT', () => expectToken(t0({ cnf: { 'x5t#S256': 'abc' } }), '401 IT'));
    it('C28 30-day lifetime → 200', () => expectToken(t0({ iat: now() - 10, exp: now() + 30 * 86400 }), '200'));
    it('C29 unknown claims and header members → 200', () =>
      expectToken(zoneSigned(zone, { ...T0_HEADER, x_custom: 1 }, baseClaims(zone, { tenant: 't', roles: ['a'] })), '200'));
  });

  describe('H. DPoP, mode H-0 (not enabled)', () => {
    it('H0a DPoP scheme with a proof header → 401∅ (unsupported scheme, Q11)', () =>
      expectRequest([['Authorization', `DPoP ${t0()}`], ['DPoP', 'eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.sig']], '401∅'));
    it('H0b a Bearer token carrying cnf.jkt → 401 IT (Q10, = C26)', () => expectToken(t0({ cnf: { jkt: 'thumb' } }), '401 IT'));
    it('H0c Bearer T0 with a stray DPoP header → 200 (header ignored)', () =>
      expectRequest([...bearer(t0()), ['DPoP', 'eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.sig']], '200'));
  });

  describe('D. Scope enforcement', () => {
    it('D1 "orders:read" → 200', () => expectToken(t0({ scope: 'orders:read' }), '200'));
    it('D2 among other scopes → 200', () => expectToken(t0({ scope: 'profile orders:read email' }), '200'));
    it('D3 another scope → 403', () => expectToken(t0({ scope: 'orders:write' }), '403:orders:read'));
    it.each([[undefined], [''], [null], [42]])('D4 scope %j → 403', (scope) => expectToken(t0({ scope }), '403:orders:read'));
    it.each(['orders:readx', 'xorders:read'])('D5 substring trap %j → 403', (scope) => expectToken(t0({ scope }), '403:orders:read'));
    it('D6 different case → 403', () => expectToken(t0({ scope: 'ORDERS:READ' }), '403:orders:read'));
    it('D7 scope as an array → 403 (Q6)', () => expectToken(t0({ scope: ['orders:read'] }), '403:orders:read'));
    it('D8 extra spaces → 200', () => expectToken(t0({ scope: '  orders:read   email ' }), '200'));
    it('D9 all-of, every required scope listed in order', async () => {
      const json: [string, string] = ['Content-Type', 'application/json'];
      const res = await send(api.url, 'POST', '/orders', [...bearer(t0({ scope: 'orders:read' })), json], '{}');
      expectOutcome(res, '403:orders:read orders:write', PRM);
    });
    it('D10 hostile scope value: the challenge scope comes from the route', () =>
      expectToken(t0({ scope: 'a"b\\c\r\nX: y' }), '403:orders:read'));
    it('D11 expired token with the wrong scope → 401 IT, not 403 (INV5)', () =>
      expectToken(t0({ scope: 'orders:write', exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 7200 }), '401 IT'));
    it('D12 scp claim only → 403 unless configured', () => expectToken(t0({ scope: undefined, scp: ['orders:read'] }), '403:orders:read'));
    it('method scopes override class scopes', async () => {
      await expectToken(t0({ scope: 'reports:read' }), '200', '/admin/reports');
      await expectToken(t0({ scope: 'reports:read' }), '403:admin', '/admin');
    });
  });

  describe('G. Protected resource metadata', () => {
    it('G1 the document', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json).toEqual({
        resource: R,
        authorization_servers: [zone.issuer],
        bearer_methods_supported: ['header'],
        scopes_supported: ['orders:read', 'orders:write', 'admin', 'reports:read'],
      });
    });
    it('G3 unknown suffix → 404', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource/unknown');
      expect(res.status).toBe(404);
      expect(res.text).not.toContain(R);
    });
    it.each(['POST', 'PUT', 'DELETE'])('G4 %s → 405 with Allow', async (method) => {
      // POST/PUT carry a JSON body, so that Fastify's content-type check (415) does not answer first.
      const withBody = method !== 'DELETE';
      const res = await send(api.url, method, '/.well-known/oauth-protected-resource', withBody ? [['Content-Type', 'application/json']] : [], withBody ? '{}' : undefined);
      expect(res.status).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD');
    });
    it('G4 HEAD → 200 without a body', async () => {
      const res = await send(api.url, 'HEAD', '/.well-known/oauth-protected-resource');
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
    });
    it('G5 an invalid token on the PRM request is ignored', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource', [['Authorization', 'Bearer junk']]);
      expect(res.status).toBe(200);
    });
    it('G6 Cache-Control max-age and CORS', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource', [['Origin', 'https://app.example']]);
      expect(res.headers['cache-control']).toMatch(/max-age=\d+/);
      expect(res.headers['access-control-allow-origin']).toBe('*');
    });
    it('G7 content: no none, no fragment', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-protected-resource');
      expect(res.text).not.toContain('"none"');
      expect((res.json as { resource: string }).resource).not.toContain('#');
    });
    it('G9 spoofed Host / X-Forwarded-Host do not change resource or resource_metadata', async () => {
      const spoof: [string, string][] = [['Host', 'evil.example'], ['X-Forwarded-Host', 'evil.example']];
      const doc = await send(api.url, 'GET', '/.well-known/oauth-protected-resource', spoof);
      expect((doc.json as { resource: string }).resource).toBe(R);
      await expectRequest(spoof, '401∅');
    });
    it('G10 aud of a resource the PRM does not publish → 401 IT', () => expectToken(t0({ aud: 'https://billing.example.com' }), '401 IT'));
    it('the zone metadata is mirrored verbatim', async () => {
      const res = await send(api.url, 'GET', '/.well-known/oauth-authorization-server');
      expect(res.status).toBe(200);
      expect(res.json).toEqual(zone.metadata());
    });
    it('public routes need no token, and ignore a broken one', async () => {
      expect((await send(api.url, 'GET', '/health')).status).toBe(200);
      expect((await send(api.url, 'GET', '/health', [['Authorization', 'Bearer junk']])).status).toBe(200);
    });
  });

  describe('the agent context', () => {
    it('@Agent() and @Agent(field) carry the verified identity', async () => {
      const token = t0({ scope: 'orders:read', sid: 'sess-9', act: { sub: 'agent-svc', client_id: 'cli-0' } });
      const res = await expectToken(token, '200', '/me');
      const { agent, subject } = res.json as { agent: Record<string, unknown>; subject: string };
      expect(subject).toBe('user-1');
      expect(agent).toMatchObject({
        clientId: 'cli-1', subject: 'user-1', sessionId: 'sess-9', scopes: ['orders:read'], issuer: zone.issuer,
        audience: [R], actor: { subject: 'agent-svc', clientId: 'cli-0' },
      });
      expect(typeof agent.tokenId).toBe('string');
      expect(JSON.stringify(agent)).not.toContain(token);
    });
  });

  describe('verification facts', () => {
    it('a known kid costs no JWKS request per request', async () => {
      await expectToken(t0(), '200');
      const before = zone.counts.jwks;
      for (let i = 0; i < 20; i++) await expectToken(t0(), '200');
      expect(zone.counts.jwks).toBe(before);
    });
    it('a burst of unknown kids causes at most one JWKS fetch per cooldown', async () => {
      api.clock.offsetMs += 31_000; // past any earlier cooldown
      const before = zone.counts.jwks;
      const attackerKey = TestZone.generateKey('x', 'RS256');
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => expectToken(zoneSignedWith(attackerKey, { ...T0_HEADER, kid: `random-${i}` }), '401 IT')),
      );
      expect(zone.counts.jwks - before).toBeLessThanOrEqual(1);
      api.clock.offsetMs -= 31_000;
    });
  });

  function zoneSignedWith(key: ReturnType<typeof TestZone.generateKey>, header: Record<string, unknown>): string {
    return zoneSignedRaw(key, header, baseClaims(zone));
  }
});

function zoneSignedRaw(key: ReturnType<typeof TestZone.generateKey>, header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const input = unsigned(header, claims);
  return `${input}.${base64url(sign('sha256', Buffer.from(input), key.privateKey))}`;
}
