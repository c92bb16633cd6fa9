/**
 * Catalogue A11, A25 and the token's grammar (RFC 6750 §2.1 `b64token`), after issue 24 moved the
 * check of HTTP tokens from the extractor into the verification (a cache hit or a token that
 * decodes as a compact JWS implies it; everything else is checked first): every token without that
 * grammar is still refused 401 `invalid_token` with reason `token_malformed`, over both adapters,
 * with the cache warm or not, and never reaches the zone's introspection endpoint. A real Nest app
 * on loopback and the real local zone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

const CLIENT = { clientId: 'api', clientSecret: 'api-secret-do-not-log' };
let zone: TestZone;

beforeAll(async () => {
  zone = await TestZone.start({ audience: R, clients: [CLIENT] });
});
afterAll(async () => {
  await zone.stop();
});

/** Tokens whose text is not a `b64token`: the guard must answer each `token_malformed`. */
function malformed(valid: string): string[] {
  return [
    'abc$def', // not a JWS, a character outside the grammar
    `${valid}$`, // a valid token (even a cached one) with a character outside the grammar
    `${valid.slice(0, -2)}=A`, // '=' not at the end
    `${valid.split('.')[0]}.e30=.sig`, // '=' inside a segment
    `${valid.replace('.', ',')}`, // ',' for '.'
    'a.b.c\u00e9', // a non-ASCII letter (A25)
    `${valid},Bearer ${valid}`, // a comma list in one header (A11)
  ];
}

describe.each(ADAPTERS)('token grammar (%s)', (adapter) => {
  for (const opaqueTokens of [undefined, 'introspect'] as const) {
    describe(`opaqueTokens ${opaqueTokens ?? 'off'}`, () => {
      let app: RunningApp;
      beforeAll(async () => {
        app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, clientCredentials: CLIENT, opaqueTokens });
      });
      afterAll(async () => {
        await app.close();
      });

      it('A11 A25 every token outside b64token is refused token_malformed, cached sibling or not, and is never introspected', async () => {
        const valid = zone.issueToken({ scope: 'orders:read' });
        // Twice: from its second verification on the token is in the verified-token cache.
        for (let i = 0; i < 3; i++) expect((await send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${valid}`]])).status).toBe(200);
        const asked = zone.introspection.requests.length;
        for (const token of malformed(valid)) {
          const lines = app.logger.lines.length;
          const res = await send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${Buffer.from(token, 'latin1').toString('latin1')}`]]);
          expectOutcome(res, '401 IT scope=orders:read', PRM, [token, valid], app.logger.lines);
          expect(app.logger.lines.slice(lines).join('\n')).toContain('reason=token_malformed');
        }
        expect(zone.introspection.requests.length).toBe(asked);
      });

      it('A11 a b64token that is no JWS keeps its own answer: signature_invalid for a respelt signature, introspection only when on', async () => {
        const valid = zone.issueToken({ scope: 'orders:read' });
        const lines = app.logger.lines.length;
        const res = await send(app.url, 'GET', '/orders', [['Authorization', `Bearer ${valid}~`]]); // `~` is b64token, not base64url
        expectOutcome(res, '401 IT scope=orders:read', PRM, [valid], app.logger.lines);
        expect(app.logger.lines.slice(lines).join('\n')).toContain('reason=signature_invalid');
        const asked = zone.introspection.requests.length;
        const opaque = await send(app.url, 'GET', '/orders', [['Authorization', 'Bearer not~a+jws/token==']]);
        expectOutcome(opaque, '401 IT scope=orders:read', PRM, ['not~a+jws/token=='], app.logger.lines);
        expect(zone.introspection.requests.length).toBe(asked + (opaqueTokens === undefined ? 0 : 1));
      });
    });
  }
});
