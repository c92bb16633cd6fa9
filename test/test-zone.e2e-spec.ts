/**
 * The TestZone itself under hostile input and handler failures (catalogue O21, O22): every malformed
 * request gets a 4xx, a handler that throws gets a 500 for that request only, and nothing ever
 * escapes as an unhandled rejection or exception that would end the process hosting the zone.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { TestZone, type ZoneEndpoint, type ZoneFault } from '../lib/testing/index.js';
import { send, type HttpAnswer } from './support/http.js';

const RESOURCE = 'https://api.example.com';
const SECRET = 's3cret';
const FORM = 'application/x-www-form-urlencoded';
const basic = (credentials: string): [string, string] => ['Authorization', `Basic ${Buffer.from(credentials).toString('base64')}`];
const GOOD_BASIC = basic(`cli-1:${SECRET}`);
const GRANT = 'grant_type=client_credentials';

describe('TestZone: malformed input and failing handlers', () => {
  let zone: TestZone;
  const escaped: unknown[] = [];
  const onEscape = (error: unknown) => escaped.push(error);

  beforeAll(async () => {
    process.on('unhandledRejection', onEscape);
    process.on('uncaughtException', onEscape);
    zone = await TestZone.start({ clients: [{ clientId: 'cli-1', clientSecret: SECRET }], resources: { [RESOURCE]: ['orders:read'] } });
  });
  afterEach(() => zone.reset());
  afterAll(async () => {
    await zone.stop();
    process.off('unhandledRejection', onEscape);
    process.off('uncaughtException', onEscape);
  });

  const token = (headers: [string, string][], body: string, contentType = FORM) =>
    send(zone.origin, 'POST', '/token', [['Content-Type', contentType], ...headers], body);
  /** A well-formed request still gets a token: the zone kept serving. */
  const expectServing = async () => {
    const res = await token([GOOD_BASIC], GRANT);
    expect(res.status).toBe(200);
    expect((res.json as { access_token?: unknown }).access_token).toEqual(expect.any(String));
  };
  const expectOAuthError = (res: HttpAnswer, status: number, error: string) => {
    expect(res.status).toBe(status);
    expect(res.json).toEqual({ error });
  };

  it.each([
    ['Basic base64("%E0%A4%A:x") (a malformed percent-encoding in the client id)', basic('%E0%A4%A:x')],
    ['Basic without a colon', basic(`cli-1${SECRET}`)],
    ['Basic !!!', ['Authorization', 'Basic !!!']],
  ] as [string, [string, string]][])('O21 %s → 401 invalid_client with a Basic challenge', async (_name, header) => {
    const res = await token([header], GRANT);
    expectOAuthError(res, 401, 'invalid_client');
    expect(res.headers['www-authenticate']).toMatch(/^Basic /);
    await expectServing();
    expect(escaped).toEqual([]);
  });

  it.each([
    ['grant_type=%ZZ', 'grant_type=%ZZ', FORM],
    ['grant_type sent twice (RFC 6749 §3.2)', `${GRANT}&grant_type=client_credentials`, FORM],
    ['a JSON body', JSON.stringify({ grant_type: 'client_credentials' }), 'application/json'],
  ])('O21 %s → 400 invalid_request', async (_name, body, contentType) => {
    expectOAuthError(await token([GOOD_BASIC], body, contentType), 400, 'invalid_request');
    await expectServing();
    expect(escaped).toEqual([]);
  });

  it('O21 a 2 MiB form body → 413, and the zone still serves', async () => {
    const res = await token([GOOD_BASIC], `${GRANT}&pad=${'x'.repeat(2 * 1024 * 1024)}`);
    expect(res.status).toBe(413);
    await expectServing();
    expect(escaped).toEqual([]);
  });

  describe.each([
    ['throws a plain Error', { kind: 'throw' }],
    ['rejects asynchronously', { kind: 'reject' }],
  ] as [string, ZoneFault][])('O22 a handler that %s', (_name, fault) => {
    it.each([
      ['metadata', () => send(zone.origin, 'GET', '/.well-known/oauth-authorization-server')],
      ['oidc', () => send(zone.origin, 'GET', '/.well-known/openid-configuration')],
      ['jwks', () => send(zone.origin, 'GET', '/jwks')],
      ['token', () => token([GOOD_BASIC], GRANT)],
    ] as [ZoneEndpoint, () => Promise<HttpAnswer>][])('O22 on %s → 500 with a fixed body; the next request is served', async (endpoint, call) => {
      zone.faults[endpoint] = fault;
      const failed = await call();
      expect(failed.status).toBe(500);
      expect(failed.text).toBe('{"error":"server_error"}');
      expect(zone.handlerErrors).toHaveLength(1);
      delete zone.faults[endpoint];
      expect((await call()).status).toBe(200);
      expect(escaped).toEqual([]);
    });
  });
});
