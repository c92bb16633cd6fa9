import { describe, expect, it } from '@jest/globals';
import { findChallenge, parseWwwAuthenticate } from './www-authenticate.js';

const PRM = 'https://api.example.com/.well-known/oauth-protected-resource';
const simplify = (value: string) =>
  parseWwwAuthenticate(value)?.map((c) => ({ scheme: c.scheme, params: Object.fromEntries(c.params), token68: c.token68 }));

describe('parseWwwAuthenticate (RFC 9110 §11)', () => {
  it.each([
    [`Bearer resource_metadata="${PRM}"`],
    [`Bearer Resource_Metadata="${PRM}"`],
    [`bearer RESOURCE_METADATA="${PRM}"`],
    [`Bearer resource_metadata = "${PRM}"`],
    [`Bearer resource_metadata\t=\t"${PRM}"`],
    [`Bearer realm="api", resource_metadata="${PRM}"`],
    [`Bearer realm=api,resource_metadata="${PRM}" , error="invalid_token"`],
    [`DPoP algs="ES256 PS256", Bearer resource_metadata="${PRM}"`],
    [`Basic realm="x", Bearer resource_metadata="${PRM}"`],
    [`Negotiate, Basic abc==, Bearer resource_metadata="${PRM}"`],
    [`, Bearer realm="a \\"quoted\\" realm, with a comma", resource_metadata="${PRM}",`],
  ])('finds the Bearer resource_metadata in %s', (value) => {
    expect(findChallenge(value, 'Bearer')?.params.get('resource_metadata')).toBe(PRM);
  });

  it('reads the RFC 9110 §11.6.1 example', () => {
    expect(simplify('Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"')).toEqual([
      { scheme: 'Newauth', params: { realm: 'apps', type: '1', title: 'Login to "apps"' }, token68: undefined },
      { scheme: 'Basic', params: { realm: 'simple' }, token68: undefined },
    ]);
  });

  it('reads token68 and bare schemes', () => {
    expect(simplify('Negotiate abc/+=, Other, Bearer')).toEqual([
      { scheme: 'Negotiate', params: {}, token68: 'abc/+=' },
      { scheme: 'Other', params: {}, token68: undefined },
      { scheme: 'Bearer', params: {}, token68: undefined },
    ]);
  });

  it('unquotes quoted-pairs and keeps what a quoted value holds', () => {
    expect(findChallenge('Bearer scope="a b", error_description="x \\\\ \\" y"', 'bearer')?.params).toEqual(
      new Map([['scope', 'a b'], ['error_description', 'x \\ " y']]),
    );
  });

  it.each([
    ['unterminated quote', 'Bearer realm="api'],
    ['a comma before the first param', 'Bearer, realm="x"'],
    ['a value missing', 'Bearer a="b", c='],
    ['a repeated parameter', `Bearer resource_metadata="${PRM}", Resource_Metadata="https://evil.example"`],
    ['a control character in a quoted value', 'Bearer realm="a\nb"'],
    ['text after a value', 'Bearer realm="api" junk'],
    ['no scheme', '="x"'],
    ['a quoted-pair escaping a control character', 'Bearer realm="a\\\u0001"'],
  ])('refuses %s', (_what, value) => {
    expect(parseWwwAuthenticate(value)).toBeUndefined();
    expect(findChallenge(value, 'Bearer')).toBeUndefined();
  });

  it('answers an empty value with no challenges, and nothing for a missing header', () => {
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate(' , ')).toEqual([]);
    expect(findChallenge(null, 'Bearer')).toBeUndefined();
  });

  it('stays linear on hostile input', () => {
    const started = performance.now();
    const params = Array.from({ length: 20_000 }, (_, i) => `p${i}=b`).join(', ');
    expect(parseWwwAuthenticate(`Bearer ${params}, x="${'\\"'.repeat(20_000)}`)).toBeUndefined();
    parseWwwAuthenticate('Bearer ' + 'a '.repeat(50_000));
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
