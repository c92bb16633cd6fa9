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

  describe('zones', () => {
    const z2 = 'https://other.keycard.cloud';

    it('keeps each zone\'s issuer exactly, its own resources and credentials, else the module\'s', () => {
      const options = normaliseOptions({
        zones: [zoneUrl, { zoneUrl: z2, resource: 'https://b.example.com', clientCredentials: { clientId: 'b', clientSecret: 's' } }],
        resource: 'https://a.example.com',
        clientCredentials: { clientId: 'a', clientSecret: 's' },
      });
      expect(options.zones.map((z) => z.issuer)).toEqual([zoneUrl, z2]);
      expect([...options.zones[0].resourceIds!]).toEqual(['https://a.example.com']);
      expect([...options.zones[1].resourceIds!]).toEqual(['https://b.example.com']);
      expect(options.resources.map((r) => r.id)).toEqual(['https://a.example.com', 'https://b.example.com']);
      expect(options.zones.map((z) => (z.clientAuthentication as { clientId?: string } | undefined)?.clientId)).toEqual(['a', 'b']);
      expect(options.issuer).toBe(zoneUrl);
    });

    it('one zoneUrl is one zone serving every resource', () => {
      const options = normaliseOptions(zoneUrl);
      expect(options.zones).toHaveLength(1);
      expect(options.zones[0].resourceIds).toBeUndefined();
    });

    it.each([
      [{ zones: [] }, "'zones' must list at least one zone"],
      [{ zones: 'x' }, "'zones' must list at least one zone"],
      [{ zones: [zoneUrl], zoneUrl }, "'zones' cannot be combined with 'zoneUrl'"],
      [{ zones: [zoneUrl, zoneUrl] }, "'zones' lists https://zone.keycard.cloud twice"],
      [{ zones: [zoneUrl, 'http://zone.example.com'] }, "'zones[1].zoneUrl' must use https"],
      [{ zones: [zoneUrl, { zoneUrl: `${z2}?t=1` }] }, "'zones[1].zoneUrl' must not contain a query"],
      [{ zones: [null] }, "'zones[0]' must be a zone URL string"],
      [{ zones: [{ zoneUrl, resource: 'relative' }] }, "'zones[0].resource' is not an absolute URL"],
      [{ zones: [{ zoneUrl, clientCredentials: { clientId: 1 } }] }, "'zones[0].clientCredentials' must be"],
      [{ zones: [{ zoneUrl, resource: 'https://a.example.com' }, z2] }, "'zones' mixes zones with and without 'resource'"],
    ])('%j fails naming the option', (options, message) => {
      expect(() => normaliseOptions(options as never)).toThrow(message);
    });
  });
});
