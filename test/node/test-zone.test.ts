/**
 * The TestZone itself under hostile input and handler failures (catalogue O21, O22): every malformed
 * request gets a 4xx, a handler that throws gets a 500 for that request only, and nothing escapes as
 * an unhandled rejection or exception that would end the process hosting the zone.
 * Node's test runner, not Jest: listeners a Jest test registers on `process` never see these
 * events (Jest's sandbox takes them), and here they do.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { TestZone, type ZoneEndpoint, type ZoneFault } from '../../lib/testing/index.js';
import { send, type HttpAnswer } from '../support/http.js';

const RESOURCE = 'https://api.example.com';
const SECRET = 's3cret';
const FORM = 'application/x-www-form-urlencoded';
const basic = (credentials: string): [string, string] => ['Authorization', `Basic ${Buffer.from(credentials).toString('base64')}`];
const GOOD_BASIC = basic(`cli-1:${SECRET}`);
const GRANT = 'grant_type=client_credentials';

void describe('TestZone: malformed input and failing handlers', () => {
  let zone: TestZone;
  const escaped: unknown[] = [];
  const onEscape = (error: unknown) => escaped.push(error);

  before(async () => {
    process.on('unhandledRejection', onEscape);
    process.on('uncaughtException', onEscape);
    zone = await TestZone.start({ clients: [{ clientId: 'cli-1', clientSecret: SECRET }], resources: { [RESOURCE]: ['orders:read'] } });
  });
  afterEach(() => zone.reset());
  after(async () => {
    await zone.stop();
    process.off('unhandledRejection', onEscape);
    process.off('uncaughtException', onEscape);
  });

  const token = (headers: [string, string][], body: string, contentType = FORM) =>
    send(zone.origin, 'POST', '/token', [['Content-Type', contentType], ...headers], body);
  /** A well-formed request still gets a token, and nothing escaped: the zone process kept serving. */
  const expectServing = async () => {
    const res = await token([GOOD_BASIC], GRANT);
    assert.equal(res.status, 200);
    assert.equal(typeof (res.json as { access_token?: unknown }).access_token, 'string');
    assert.deepEqual(escaped, []);
  };
  const expectOAuthError = (res: HttpAnswer, status: number, error: string) => {
    assert.equal(res.status, status);
    assert.deepEqual(res.json, { error });
  };

  const malformedBasic: [string, [string, string]][] = [
    ['Basic base64("%E0%A4%A:x") (a malformed percent-encoding in the client id)', basic('%E0%A4%A:x')],
    ['Basic without a colon', basic(`cli-1${SECRET}`)],
    ['Basic !!!', ['Authorization', 'Basic !!!']],
  ];
  for (const [name, header] of malformedBasic) {
    void it(`O21 ${name} → 401 invalid_client with a Basic challenge`, async () => {
      const res = await token([header], GRANT);
      expectOAuthError(res, 401, 'invalid_client');
      assert.match(String(res.headers['www-authenticate']), /^Basic /);
      await expectServing();
    });
  }

  const malformedForms: [string, string, string][] = [
    ['grant_type=%ZZ', 'grant_type=%ZZ', FORM],
    ['grant_type sent twice (RFC 6749 §3.2)', `${GRANT}&grant_type=client_credentials`, FORM],
    ['a JSON body', JSON.stringify({ grant_type: 'client_credentials' }), 'application/json'],
  ];
  for (const [name, body, contentType] of malformedForms) {
    void it(`O21 ${name} → 400 invalid_request`, async () => {
      expectOAuthError(await token([GOOD_BASIC], body, contentType), 400, 'invalid_request');
      await expectServing();
    });
  }

  void it('O21 introspection: a form that is not a form, no token, bad credentials → 4xx, and the zone still serves', async () => {
    const introspect = (headers: [string, string][], body: string, contentType = FORM) =>
      send(zone.origin, 'POST', '/introspect', [['Content-Type', contentType], ...headers], body);
    assert.equal((await introspect([GOOD_BASIC], 'token=%zz')).status, 400);
    assert.equal((await introspect([GOOD_BASIC], 'token=a', 'application/json')).status, 400);
    assert.equal((await introspect([GOOD_BASIC], 'token_type_hint=access_token')).status, 400);
    assert.equal((await introspect([basic('cli-1:wrong')], 'token=a')).status, 401);
    assert.equal((await introspect([GOOD_BASIC], `token=${'x'.repeat(2 * 1024 * 1024)}`)).status, 413);
    assert.deepEqual((await introspect([GOOD_BASIC], 'token=unknown')).json, { active: false });
    await expectServing();
  });

  void it('O21 a 2 MiB form body → 413, and the zone still serves', async () => {
    const res = await token([GOOD_BASIC], `${GRANT}&pad=${'x'.repeat(2 * 1024 * 1024)}`);
    assert.equal(res.status, 413);
    await expectServing();
  });

  const failures: [string, ZoneFault][] = [
    ['throws a plain Error', { kind: 'throw' }],
    ['rejects asynchronously', { kind: 'reject' }],
  ];
  const endpoints: [ZoneEndpoint, () => Promise<HttpAnswer>][] = [
    ['metadata', () => send(zone.origin, 'GET', '/.well-known/oauth-authorization-server')],
    ['oidc', () => send(zone.origin, 'GET', '/.well-known/openid-configuration')],
    ['jwks', () => send(zone.origin, 'GET', '/jwks')],
    ['token', () => token([GOOD_BASIC], GRANT)],
    ['introspection', () => send(zone.origin, 'POST', '/introspect', [['Content-Type', FORM], GOOD_BASIC], 'token=opaque-1')],
  ];
  for (const [failure, fault] of failures) {
    for (const [endpoint, call] of endpoints) {
      void it(`O22 the ${endpoint} handler ${failure} → that request gets 500 with a fixed body; the next request is served`, async () => {
        zone.faults[endpoint] = fault;
        const failed = await call();
        assert.equal(failed.status, 500);
        assert.equal(failed.text, '{"error":"server_error"}');
        assert.equal(zone.handlerErrors.length, 1);
        delete zone.faults[endpoint];
        assert.equal((await call()).status, 200);
        assert.deepEqual(escaped, []);
      });
    }
  }
});
