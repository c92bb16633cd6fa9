/**
 * Property-based fuzzing of the guard over HTTP: random and mutated tokens and headers must only
 * ever earn one of the allowed answers — never a 500, a hang or an unhandled rejection — and every
 * refusal carries a well-formed challenge. A fixed seed in CI; FUZZ_RUNS / FUZZ_SEED for longer runs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { base64url, TestZone } from '../lib/testing/index.js';
import { baseClaims, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { parseChallenge, send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
const ALLOWED = new Set([200, 400, 401, 403]);

/** Characters Node lets a client put in a header value (HTAB, visible ASCII, obs-text). */
const headerChar = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }),
  fc.constant(0x09),
  fc.integer({ min: 0x80, max: 0xff }),
).map((code) => String.fromCharCode(code));
const headerValue = (maxLength: number) => fc.array(headerChar, { maxLength }).map((chars) => chars.join('').trim());

describe.each(ADAPTERS)('fuzzing the guard over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  async function judge(authorization: string): Promise<void> {
    const res = await send(api.url, 'GET', '/orders', [['Authorization', authorization]]);
    expect(ALLOWED.has(res.status)).toBe(true);
    if (res.status === 200) return;
    const challenge = parseChallenge(res.headers['www-authenticate']);
    expect(challenge?.scheme).toBe('Bearer');
    expect(challenge?.params.resource_metadata).toBe(PRM);
    expect(new Set(challenge!.names).size).toBe(challenge!.names.length);
    expect(api.logger.lines.some((l) => l.includes(authorization.slice(7)) && authorization.length > 30)).toBe(false);
  }

  const property = (arbitrary: fc.Arbitrary<string>) =>
    fc.assert(fc.asyncProperty(arbitrary, judge), { numRuns: RUNS, seed: SEED, endOnFailure: true });

  it('random header values', () => property(headerValue(300)));

  it('Bearer + random b64token-ish strings, up to past the length cap', () =>
    property(fc.oneof(fc.stringMatching(/^[A-Za-z0-9._~+/=-]{0,200}$/), fc.stringMatching(/^[A-Za-z0-9_-]{8000,8300}$/)).map((t) => `Bearer ${t}`)));

  it('mutations of a valid token (flip, insert, delete, truncate, splice)', () => {
    const valid = zoneSigned(zone, T0_HEADER, baseClaims(zone));
    const mutation = fc.record({
      kind: fc.constantFrom('flip', 'insert', 'delete', 'truncate', 'splice'),
      at: fc.nat({ max: valid.length - 1 }),
      char: fc.constantFrom(...'AZaz09-_.=+/ '.split('')),
    });
    return property(
      fc.array(mutation, { minLength: 1, maxLength: 4 }).map((mutations) => {
        let token = valid;
        for (const { kind, at, char } of mutations) {
          const i = Math.min(at, token.length);
          if (kind === 'flip') token = token.slice(0, i) + char + token.slice(i + 1);
          if (kind === 'insert') token = token.slice(0, i) + char + token.slice(i);
          if (kind === 'delete') token = token.slice(0, i) + token.slice(i + 1);
          if (kind === 'truncate') token = token.slice(0, i);
          if (kind === 'splice') token = token.split('.').reverse().join('.');
        }
        return `Bearer ${token}`;
      }),
    );
  });

  it('random JSON headers and payloads, unsigned or signed by a zone key', () =>
    property(
      fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.jsonValue({ maxDepth: 3 }), fc.boolean(), fc.constantFrom('RS256', 'ES256', 'none', 'HS256')).map(
        ([header, payload, signed, alg]) => {
          const h = typeof header === 'object' && header !== null && !Array.isArray(header) ? { ...header, alg, kid: alg === 'ES256' ? 'ec1' : 'rs1' } : header;
          if (signed && (alg === 'RS256' || alg === 'ES256')) {
            return `Bearer ${zoneSigned(zone, JSON.stringify(h), JSON.stringify(payload) ?? 'null', alg === 'ES256' ? 'ec1' : 'rs1', alg)}`;
          }
          return `Bearer ${base64url(JSON.stringify(h) ?? '')}.${base64url(JSON.stringify(payload) ?? '')}.${base64url('sig')}`;
        },
      ),
    ));
});
