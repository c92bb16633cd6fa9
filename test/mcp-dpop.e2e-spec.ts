/**
 * Catalogue U19: the checks of the MCP conformance scenario `auth/dpop-server-validation` (SEP-1932,
 * conformance PR #395), which no published `@modelcontextprotocol/conformance` contains (the pinned
 * 0.2.0-alpha.12 is the newest; 0.1.16 is `latest`): written here from the scenario's published text,
 * each test named by its check id, against the MCP endpoints (mcp-nest 2.x and the MCP SDK transport
 * in an `@McpEndpoint()` controller) of a real Nest app with `dpop` on and the MCP profile's ±300 s
 * proof window, tokens from a real TestZone bound to real client keys. A refusal is a 401 with a
 * `DPoP` challenge (not merely some 4xx), and nothing of the token or the proof leaks.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { DpopKey } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { challengesOf, forgedProof, tamperedSignature } from './support/dpop.js';
import { freePort } from './support/free-port.js';
import { send, type HttpAnswer } from './support/http.js';
import { ADAPTERS } from './support/keycard-app.js';
import { startMcpApp, type RunningMcpApp } from './support/mcp-app.js';

/** The scenario's probe at revision 2025-11-25: an `initialize`, which both shapes serve. */
const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'dpop-server-validation', version: '1.0.0' } },
});

const SHAPES = [
  ['mcp-nest', '/mcp', 'mcp:tools'],
  ['the MCP SDK transport in an @McpEndpoint() controller', '/sdk-mcp', 'read'],
] as const;

const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

describe.each(ADAPTERS)('MCP DPoP server validation (auth/dpop-server-validation) over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningMcpApp;
  let nonced: RunningMcpApp;

  beforeAll(async () => {
    zone = await TestZone.start();
    // The MCP DPoP profile: proofs within ±5 minutes (SEP-1932).
    api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), keycard: { zoneUrl: zone.issuer, dpop: { mode: 'allowed', proofWindowSeconds: 300 } } });
    const nonce = { keys: [{ id: 'n1', key: randomBytes(32) }] };
    nonced = await startMcpApp({ adapter, zoneUrl: zone.issuer, port: await freePort(), keycard: { zoneUrl: zone.issuer, dpop: { mode: 'allowed', proofWindowSeconds: 300, nonce } } });
  });
  afterAll(async () => {
    await api?.close();
    await nonced?.close();
    await zone?.stop();
  });

  describe.each(SHAPES)('%s', (_shape, path, scope) => {
    const key = DpopKey.generate('ES256');
    const url = (app = api) => `${app.url}${path}`;
    const bound = (claims: Record<string, unknown> = {}, app = api) =>
      zone.issueToken({ aud: url(app), scope, sub: 'alice', client_id: 'agent-7', cnf: { jkt: key.thumbprint }, ...claims });
    const proofFor = (token: string, extra: Partial<Parameters<DpopKey['proof']>[0]> = {}, app = api) => key.proof({ method: 'POST', url: url(app), accessToken: token, ...extra });
    const now = () => Math.floor(Date.now() / 1000);

    function post(auth: string, dpop: string | string[] | undefined, app = api): Promise<HttpAnswer> {
      const headers: [string, string][] = [['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'], ['Authorization', auth]];
      for (const value of dpop === undefined ? [] : [dpop].flat()) headers.push(['DPoP', value]);
      return send(app.url, 'POST', path, headers, INITIALIZE);
    }

    /** The scenario's "proper rejection": 401 with a DPoP challenge; and no token or proof in the answer or the logs. */
    function expectDpopRejection(res: HttpAnswer, secrets: readonly string[], app = api): void {
      expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: 401 });
      expect(challengesOf(res).has('dpop')).toBe(true);
      for (const secret of secrets) {
        expect(res.text).not.toContain(secret);
        expect(app.logger.lines.some((line) => line.includes(secret))).toBe(false);
      }
    }

    const expectAccepted = (res: HttpAnswer) => expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: 200 });

    it('U19 sep-1932-server-validate-proof (AcceptsValidProof): a DPoP-bound token with a valid proof → 200', async () => {
      const token = bound();
      expectAccepted(await post(`DPoP ${token}`, proofFor(token)));
    });

    it('U19 sep-1932-server-validate-proof (RFC 9449 §4.3 defects): tampered signature, no jti, typ jwt, htu or htm of another request, a private key in jwk, wrong or no ath, two DPoP headers, no htm, htu, iat or jwk, not a JWT, cnf.jkt of another key → 401 + DPoP challenge', async () => {
      const token = bound();
      const valid = () => proofFor(token);
      const defects: [string, string | string[]][] = [
        ['tampered-signature', tamperedSignature(valid())],
        ['missing-jti', proofFor(token, { claims: { jti: undefined } })],
        ['wrong-typ', proofFor(token, { header: { typ: 'jwt' } })],
        ['htu-mismatch', key.proof({ method: 'POST', url: 'https://wrong.example.com/mcp', accessToken: token })],
        ['htm-mismatch', proofFor(token, { method: 'GET' })],
        ['private-key-in-jwk', proofFor(token, { header: { jwk: { ...key.publicJwk, d: randomBytes(32).toString('base64url') } } })],
        ['wrong-ath', proofFor(token, { claims: { ath: 'not-the-right-hash' } })],
        ['duplicate-dpop-header', [valid(), valid()]],
        ['missing-htm', proofFor(token, { claims: { htm: undefined } })],
        ['missing-htu', proofFor(token, { claims: { htu: undefined } })],
        ['missing-iat', proofFor(token, { claims: { iat: undefined } })],
        ['missing-jwk', proofFor(token, { header: { jwk: undefined } })],
        ['ath-absent', key.proof({ method: 'POST', url: url() })],
        ['malformed-not-a-jwt', 'this-is-not-a-jwt'],
      ];
      for (const [defect, dpop] of defects) {
        const res = await post(`DPoP ${token}`, dpop);
        expect({ defect, status: res.status }).toEqual({ defect, status: 401 });
        expectDpopRejection(res, [token, ...[dpop].flat()]);
      }
      const foreign = DpopKey.generate('ES256');
      const mismatched = bound({ cnf: { jkt: foreign.thumbprint } });
      expectDpopRejection(await post(`DPoP ${mismatched}`, proofFor(mismatched)), [mismatched]);
    });

    it('U19 sep-1932-server-reject-bearer-downgrade: the DPoP-bound token under the Bearer scheme (with a valid proof) → 401 with a Bearer or DPoP challenge', async () => {
      const token = bound();
      const res = await post(`Bearer ${token}`, proofFor(token));
      expect(res.status).toBe(401);
      const challenges = challengesOf(res);
      expect(challenges.has('bearer') || challenges.has('dpop')).toBe(true);
      expect(res.text).not.toContain(token);
    });

    it('U19 sep-1932-server-iat-window: proofs 303 s old or 303 s ahead → 401 + DPoP challenge; 299 s either way → accepted (the ±5-minute window)', async () => {
      const token = bound();
      for (const offset of [-303, 303]) expectDpopRejection(await post(`DPoP ${token}`, proofFor(token, { iat: now() + offset })), [token]);
      for (const offset of [-299, 299]) expectAccepted(await post(`DPoP ${token}`, proofFor(token, { iat: now() + offset })));
    });

    it('U19 sep-1932-asymmetric-alg-only: proofs with alg none and with HS256 → 401 + DPoP challenge', async () => {
      const token = bound();
      const claims = () => ({ jti: randomUUID(), htm: 'POST', htu: url(), iat: now(), ath: ath(token) });
      const none = forgedProof({ typ: 'dpop+jwt', alg: 'none', jwk: key.publicJwk }, claims());
      const symmetric = forgedProof({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'c2VjcmV0' } }, claims(), 'secret');
      for (const proof of [none, symmetric]) expectDpopRejection(await post(`DPoP ${token}`, proof), [token, proof]);
    });

    it('U19 sep-1932-server-audience-validation: a DPoP-bound token for another audience, with a valid proof → 401 + DPoP challenge', async () => {
      const token = bound({ aud: 'https://not-this-server.example.com/mcp' });
      expectDpopRejection(await post(`DPoP ${token}`, proofFor(token)), [token]);
    });

    it('U19 sep-1932-server-reject-401 (RejectsWith401Challenge): a failed validation is a 401 with WWW-Authenticate: DPoP (error, algs, resource_metadata)', async () => {
      const token = bound();
      const proof = proofFor(token);
      const res = await post(`DPoP ${token}`, tamperedSignature(proof));
      expectDpopRejection(res, [token]);
      const dpop = challengesOf(res).get('dpop')!;
      expect(dpop.get('error')).toEqual(expect.any(String));
      expect(dpop.get('algs')).toBe('ES256 PS256');
      expect(dpop.get('resource_metadata')).toBe(`${api.url}/.well-known/oauth-protected-resource${path}`);
    });

    it('U19 sep-1932-server-nonce (NonceFlow): with server nonces on, a proof without one → 401 use_dpop_nonce + DPoP-Nonce; the retry with it → 200; a wrong nonce → 401 + DPoP challenge', async () => {
      const token = bound({}, nonced);
      const first = await post(`DPoP ${token}`, proofFor(token, {}, nonced), nonced);
      expectDpopRejection(first, [token], nonced);
      expect(challengesOf(first).get('dpop')?.get('error')).toBe('use_dpop_nonce');
      const nonce = first.headers['dpop-nonce'] as string;
      expect(nonce).toEqual(expect.any(String));
      expectAccepted(await post(`DPoP ${token}`, proofFor(token, { nonce }, nonced), nonced));
      expectDpopRejection(await post(`DPoP ${token}`, proofFor(token, { nonce: 'definitely-not-the-server-nonce' }, nonced), nonced), [token], nonced);
    });
  });
});
