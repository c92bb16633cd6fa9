import { describe, expect, it } from '@jest/globals';
import { keycardPinoHttpOptions, REDACTED, redactRequest } from './pino-http-options.js';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';

describe('redactRequest', () => {
  it('M21 redacts credential headers by name and credential values in any header, query or route parameter', () => {
    const req = {
      method: 'GET',
      url: `/a?q=1&access%5Ftoken=abc&x=${JWT}&b=Bearer%20abc&plain=ok`,
      query: { q: '1', ACCESS_TOKEN: 'abc', list: ['ok', JWT] },
      params: { id: JWT, other: '7' },
      headers: {
        authorization: 'Bearer abc', 'proxy-authorization': 'Basic dTpw', cookie: 's=1', dpop: 'x', 'x-api-key': 'k',
        'x-forwarded-authorization': 'bearer abc', 'x-jwt': JWT, 'cf-access': `prefix ${JWT}`, 'user-agent': 'curl/8', accept: 'eyJnot-a-jws',
      },
    };
    expect(redactRequest(req)).toEqual({
      method: 'GET',
      url: `/a?q=1&access%5Ftoken=${REDACTED}&x=${REDACTED}&b=${REDACTED}&plain=ok`,
      query: { q: '1', ACCESS_TOKEN: REDACTED, list: REDACTED },
      params: { id: REDACTED, other: '7' },
      headers: {
        authorization: REDACTED, 'proxy-authorization': REDACTED, cookie: REDACTED, dpop: REDACTED, 'x-api-key': REDACTED,
        'x-forwarded-authorization': REDACTED, 'x-jwt': REDACTED, 'cf-access': REDACTED, 'user-agent': 'curl/8', accept: 'eyJnot-a-jws',
      },
    });
    expect(req.headers.authorization).toBe('Bearer abc'); // the request itself is never changed
  });

  it('M21 a token in the URL path (the route parameter\'s copy in url) and in a nested query object is redacted too', () => {
    const req = {
      url: `/tokens/${JWT}/revoke?filter%5Baccess_token%5D=opaque&x=1`,
      params: { token: JWT },
      query: { filter: { access_token: 'opaque', other: { deep: [JWT] } }, x: '1' },
      headers: {},
    };
    const redacted = JSON.stringify(redactRequest(req));
    expect(redacted).not.toContain(JWT);
    expect(redacted).not.toContain('opaque');
    expect(redactRequest(req)).toMatchObject({ url: `/tokens/${REDACTED}/revoke?filter%5Baccess_token%5D=${REDACTED}&x=1`, query: { x: '1' } });
  });

  it('returns the same object when there is nothing to redact, and passes non-objects through', () => {
    const req = { method: 'GET', url: '/a?b=c', headers: { accept: '*/*' }, query: { b: 'c' } };
    expect(redactRequest(req)).toBe(req);
    expect(redactRequest(undefined)).toBeUndefined();
    expect(redactRequest('x')).toBe('x');
  });

  it('stays linear on hostile values (64 KiB of JOSE-header look-alikes)', () => {
    const started = performance.now();
    redactRequest({ headers: { a: 'eyJ'.repeat(22_000), b: ' eyJ'.repeat(16_000), c: 'bearer'.repeat(11_000) }, url: `/?${'a=eyJ&'.repeat(11_000)}` });
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe('keycardPinoHttpOptions', () => {
  it('keeps your options and serializers, redacts the output of your req serializer under a renamed key', () => {
    const res = (value: unknown) => value;
    const options = keycardPinoHttpOptions({
      level: 'debug',
      customAttributeKeys: { req: 'request' },
      serializers: { res, request: (req: { headers: object }) => ({ ...req, mine: true }) },
    });
    expect(options.level).toBe('debug');
    expect(options.serializers.res).toBe(res);
    expect(options.serializers.request({ headers: { authorization: 'Bearer x' } })).toEqual({ headers: { authorization: REDACTED }, mine: true });
    expect(keycardPinoHttpOptions().serializers.req({ headers: { authorization: 'Bearer x' } })).toEqual({ headers: { authorization: REDACTED } });
  });

  it('refuses wrapSerializers: false (the serializer would get the raw request)', () => {
    expect(() => keycardPinoHttpOptions({ wrapSerializers: false })).toThrow(TypeError);
  });
});
