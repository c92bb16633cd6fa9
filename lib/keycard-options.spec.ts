import { describe, expect, it } from '@jest/globals';
import { normaliseOptions } from './keycard-options.js';

const zoneUrl = 'https://zone.keycard.cloud';

describe('normaliseOptions', () => {
  it('takes a bare zone URL and applies the defaults', () => {
    const options = normaliseOptions(zoneUrl);
    expect(options.issuer).toBe(zoneUrl);
    expect([...options.algorithms]).toEqual(['RS256', 'PS256', 'ES256']);
    expect(options.clockToleranceSeconds).toBe(30);
    expect(options.requireAtJwtType).toBe(false);
    expect(options.resources).toEqual([]);
  });

  it.each([
    [{ zoneUrl: 'http://zone.example.com' }, "'zoneUrl' must use https"],
    [{ zoneUrl: 'https://zone.example.com?tenant=1' }, "'zoneUrl' must not contain a query"],
    [{ zoneUrl: 'https://zone.example.com#x' }, "'zoneUrl' must not contain a fragment"],
    [{ zoneUrl: 'https://user:pw@zone.example.com' }, "'zoneUrl' must not contain credentials"],
    [{ zoneUrl: 'not a url' }, "'zoneUrl' is not an absolute URL"],
    [{ zoneUrl: undefined }, "'zoneUrl' must be a non-empty URL string"],
    [{ zoneUrl, algorithms: ['none'] }, "'algorithms' contains \"none\""],
    [{ zoneUrl, algorithms: ['HS256'] }, "'algorithms' contains \"HS256\""],
    [{ zoneUrl, algorithms: [] }, "'algorithms' must be a non-empty array"],
    [{ zoneUrl, clockToleranceSeconds: 301 }, "'clockToleranceSeconds' must be a number of seconds from 0 to 300"],
    [{ zoneUrl, clockToleranceSeconds: -1 }, "'clockToleranceSeconds'"],
    [{ zoneUrl, resource: 'https://api.example.com#frag' }, "'resource' must not contain a fragment"],
    [{ zoneUrl, resource: 'http://api.example.com' }, "'resource' must use https"],
    [{ zoneUrl, resource: [] }, "'resource' must name at least one"],
    [{ zoneUrl, resource: 'https://api.example.com/a//b' }, "'resource' must not contain empty path segments"],
    [{ zoneUrl, resource: ['https://a.example', 'relative'] }, "'resource[1]' is not an absolute URL"],
    [{ zoneUrl, scopesSupported: ['a b'] }, "'scopesSupported' contains an invalid scope"],
    [{ zoneUrl, requireAtJwtType: 'yes' }, "'requireAtJwtType' must be a boolean"],
    [{ zoneUrl, logger: {} }, "'logger' must have log, warn and error methods"],
    [{ zoneUrl, fetch: 'x' }, "'fetch' must be a function"],
  ])('F7 and option checks: %j fails naming the option', (options, message) => {
    expect(() => normaliseOptions(options as never)).toThrow(message);
  });

  it('allows http for loopback zones, and elsewhere only with allowInsecureHttp', () => {
    expect(normaliseOptions('http://127.0.0.1:4000').issuer).toBe('http://127.0.0.1:4000');
    expect(normaliseOptions('http://localhost:4000').issuer).toBe('http://localhost:4000');
    expect(normaliseOptions({ zoneUrl: 'http://zone.test', allowInsecureHttp: true }).issuer).toBe('http://zone.test');
  });

  it('keeps the zone URL exactly as given (a trailing slash matters)', () => {
    expect(normaliseOptions(`${zoneUrl}/`).issuer).toBe(`${zoneUrl}/`);
  });
});
