/**
 * Issue 25, item 2 — configuration checked at boot: unknown option keys fail with a did-you-mean,
 * one summary line, a zone check that tells a configuration error from an outage (503 with one
 * error log per interval, or a failed bootstrap with `zoneCheck: 'fail'`), warnings for an unset
 * `resource` off loopback and for declared scopes the zone does not publish, and debug denial logs
 * that name what was expected. A real Nest app on loopback against the real local zone.
 */
import { describe, expect, it } from '@jest/globals';
import { KeycardModule } from '../lib/index.js';
import { RETRY_MAX_MS, RETRY_MIN_MS } from '../lib/keycard.constants.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { bearer, PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';
import { zoneSuite } from './support/zone-suite.js';

/** Resolves once `predicate` holds for the logger's lines (background checks log after the bootstrap). */
async function logged(api: RunningApp, predicate: (line: string) => boolean): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const line = api.logger.lines.find(predicate);
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no such log line in:\n${api.logger.lines.join('\n')}`);
}

describe('first hour: unknown options fail the bootstrap with a did-you-mean', () => {
  const zoneUrl = 'https://zone.keycard.cloud';
  it.each([
    [{ zoneUrl, audience: R }, "'audience' is not an option: did you mean 'resource'?"],
    [{ issuerBaseURL: zoneUrl }, "'issuerBaseURL' is not an option: did you mean 'zoneUrl'?"],
    [{ zoneURL: zoneUrl }, "'zoneURL' is not an option: did you mean 'zoneUrl'?"],
    [{ zoneUrl, resourse: R }, "'resourse' is not an option: did you mean 'resource'?"],
    [{ zoneUrl, jwksUri: `${zoneUrl}/jwks` }, "'jwksUri' is not an option: the key set is found through the zone's metadata"],
    [{ zones: [{ zoneUrl, audience: R }] }, "'zones[0].audience' is not an option: did you mean 'resource'?"],
    [{ zoneUrl, colour: 'blue' }, "'colour' is not an option (known: zoneUrl, zones, resource"],
  ])('%j', (options, message) => {
    expect(() => KeycardModule.forRoot(options as never)).toThrow(message);
  });

  it('forRootAsync: the options from a factory are checked the same way (the bootstrap fails)', async () => {
    await expect(startApp('express', { zoneUrl, audience: R } as never)).rejects.toThrow("did you mean 'resource'?");
  });
});

/** How many background discovery retries follow a failed one within `ms` (the back-off: 1 s, then doubling): the zone requests a test may see meanwhile. */
function backgroundRetriesWithin(ms: number): number {
  let retries = 0;
  for (let step = RETRY_MIN_MS, at = step; at <= ms; step = Math.min(step * 2, RETRY_MAX_MS), at += step) retries += 1;
  return retries;
}

describe('first hour: boot checks', () => {
  const suite = zoneSuite();

  const token = () => suite.zone.tokenFor({ scopes: ['orders:read'], audience: R });

  it('one line at boot summarises the configuration (zone, resource, algorithms, what is on), naming no secret', async () => {
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, auditLog: true, clientCredentials: { clientId: 'svc', clientSecret: 's3cr3t-value' } });
    const summaries = suite.api.logger.lines.filter((line) => line.startsWith('Keycard: zone'));
    expect(summaries).toEqual([
      `Keycard: zone ${suite.zone.issuer}; audience ${R}; algorithms RS256, PS256, ES256; on: token exchange, audit log, verified-token cache (10000), zone check logs`,
    ]);
    expect(suite.api.logger.lines.join('\n')).not.toContain('s3cr3t-value');
  });

  it('F2 an issuer that differs by a trailing slash is a configuration error: 503 RA "misconfigured", one error log naming expected and found, no retry storm', async () => {
    suite.zone.metadataOverrides = { issuer: `${suite.zone.issuer}/` };
    const bootAt = Date.now();
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R });
    const line = await logged(suite.api, (l) => l.startsWith('Zone configuration error'));
    expect(line).toContain(`issuer "${suite.zone.issuer}/" does not equal the configured zoneUrl "${suite.zone.issuer}" (they differ by a trailing slash)`);
    const t = token();
    const before = suite.zone.counts.metadata;
    // Past the on-demand floor (500 ms), inside the first back-off step (1 s): no request asks the zone.
    suite.api.clock.offsetMs = 700;
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(suite.api!.url, 'GET', '/orders', bearer(t))));
    for (const answer of answers) {
      expectOutcome(answer, '503 RA', PRM, [t], suite.api.logger.lines);
      expect(answer.json).toEqual({ error: 'temporarily_unavailable', error_description: 'The resource server is misconfigured' });
    }
    // Requests inside the back-off do not ask the zone: only the background retries do, on the
    // back-off's real-time steps (none in the usual second; a slow machine may see one);
    // one error line, no per-request error, no "unavailable".
    expect(suite.zone.counts.metadata - before).toBeLessThanOrEqual(backgroundRetriesWithin(Date.now() - bootAt));
    expect(suite.api.logger.levels.error).toEqual([line]);
    expect(suite.api.logger.levels.debug.filter((l) => l === 'denied GET /orders status=503 reason=zone_misconfigured')).toHaveLength(20);
    expect(suite.api.logger.lines.some((l) => l.includes('unavailable, retrying'))).toBe(false);
    // A second failed attempt inside the interval logs nothing more.
    suite.api.clock.offsetMs = 2_000;
    await send(suite.api.url, 'GET', '/orders', bearer(t));
    expect(suite.api.logger.lines.filter((l) => l.includes('configuration error'))).toHaveLength(1);
    // Fixed at the zone: served again, and said so.
    suite.zone.reset();
    suite.api.clock.offsetMs = RETRY_MAX_MS + 1_000;
    await send(suite.api.url, 'GET', '/orders', bearer(t));
    expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(t)), '200', PRM);
    expect(suite.api.logger.lines.some((l) => l.includes('metadata is valid again'))).toBe(true);
  });

  it('F5 metadata 404 (RFC 8414 and OpenID discovery) is a configuration error that names the likely cause', async () => {
    suite.zone.faults.metadata = { kind: 'status', status: 404 };
    suite.zone.faults.oidc = { kind: 'status', status: 404 };
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R });
    const line = await logged(suite.api, (l) => l.startsWith('Zone configuration error'));
    expect(line).toContain("the zone has no metadata: RFC 8414 and OpenID discovery both answered HTTP 404 (is 'zoneUrl' the zone's issuer URL");
    expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token())), '503 RA', PRM);
  });

  it('an outage stays an outage: "unavailable, retrying" warnings, 503 "retry later"', async () => {
    suite.zone.faults.metadata = { kind: 'status', status: 500 };
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R });
    const answer = await send(suite.api.url, 'GET', '/orders', bearer(token()));
    expectOutcome(answer, '503 RA', PRM);
    expect(answer.json).toEqual({ error: 'temporarily_unavailable', error_description: 'The authorization server is unreachable, retry later' });
    expect(suite.api.logger.lines.some((l) => l.includes('configuration error'))).toBe(false);
  });

  it('an outage long enough to reach the 30 s back-off, then a configuration error: its back-off starts again at 1 s (Retry-After 1), and once fixed the zone serves within it', async () => {
    suite.zone.faults.metadata = { kind: 'status', status: 500 };
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R });
    const t = token();
    // Each request past the on-demand floor (500 ms) asks the zone; every failure doubles the back-off to its cap.
    for (let attempt = 1; attempt <= 6; attempt++) {
      suite.api.clock.offsetMs += 600;
      const answer = await send(suite.api.url, 'GET', '/orders', bearer(t));
      expectOutcome(answer, '503 RA', PRM, [t], suite.api.logger.lines);
    }
    expect(suite.api.logger.lines.some((l) => l.includes(`retrying in ${RETRY_MAX_MS} ms`))).toBe(true);
    // The zone answers again, with a wrong issuer: a configuration error, a new kind of failure.
    delete suite.zone.faults.metadata;
    suite.zone.metadataOverrides = { issuer: `${suite.zone.issuer}/` };
    suite.api.clock.offsetMs += 600;
    const misconfigured = await send(suite.api.url, 'GET', '/orders', bearer(t));
    expectOutcome(misconfigured, '503 RA', PRM, [t], suite.api.logger.lines);
    expect(misconfigured.json).toEqual({ error: 'temporarily_unavailable', error_description: 'The resource server is misconfigured' });
    expect(misconfigured.headers['retry-after']).toBe(String(RETRY_MIN_MS / 1000));
    // Fixed at the zone: the next request after that second is served.
    suite.zone.reset();
    suite.api.clock.offsetMs += RETRY_MIN_MS + 100;
    expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(t)), '200', PRM);
    expect(suite.api.logger.lines.some((l) => l.includes('metadata is valid again'))).toBe(true);
  });

  it('a zone that flaps between an outage and a configuration error: the background retry still backs off (1 s doubling), each "retrying in" names the wait it keeps, requests get 503 RA', async () => {
    const attemptedAt: number[] = [];
    // Every other discovery attempt meets an outage (HTTP 500), the others a wrong issuer.
    const fetch = (input: string, init: RequestInit) => {
      if (input.endsWith('/.well-known/oauth-authorization-server')) {
        attemptedAt.push(Date.now());
        if (attemptedAt.length % 2 === 1) suite.zone.faults.metadata = { kind: 'status', status: 500 };
        else delete suite.zone.faults.metadata;
      }
      return globalThis.fetch(input, init);
    };
    suite.zone.metadataOverrides = { issuer: `${suite.zone.issuer}/` };
    const bootAt = Date.now();
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, fetch });
    // No request: only the boot attempt and the background retries ask the zone (1 s, then 2 s, …),
    // not one attempt a second forever because every change of kind started the back-off again.
    await new Promise((resolve) => setTimeout(resolve, 6_500));
    expect(attemptedAt.length).toBeLessThanOrEqual(1 + backgroundRetriesWithin(Date.now() - bootAt));
    // An outage's warning names the wait before the next attempt (outages are the odd attempts).
    const waits = suite.api.logger.levels.warn.map((l) => /unavailable, retrying in (\d+) ms/.exec(l)?.[1]).filter((w) => w !== undefined).map(Number);
    waits.forEach((wait, i) => {
      const next = attemptedAt[2 * i + 1];
      // Never sooner than it says; no upper bound, as a loaded machine may run the timer late
      // (the count above bounds how often the zone is asked).
      if (next !== undefined) expect(next - attemptedAt[2 * i]!).toBeGreaterThanOrEqual(wait - 100);
    });
    const t = token();
    expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(t)), '503 RA', PRM, [t], suite.api.logger.lines);
  }, 15_000);

  it('a key set with no usable key is logged as an error naming the expected algorithms and what was found', async () => {
    suite.zone.jwksOverride = { keys: [{ ...(suite.zone.jwks().keys[0] as object), kid: 'enc-1', use: 'enc' }] };
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R });
    expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token())), '401 IT scope=orders:read', PRM);
    const line = await logged(suite.api, (l) => l.includes('publishes no key usable'));
    expect(line).toContain('expected a key for RS256, PS256, ES256, found 1 (enc-1 RSA RS256)');
  });

  describe("zoneCheck: 'fail'", () => {
    it('a configuration error fails the bootstrap, naming expected and found', async () => {
      suite.zone.metadataOverrides = { issuer: 'https://other.example' };
      await expect(startApp('express', { zoneUrl: suite.zone.issuer, resource: R, zoneCheck: 'fail' })).rejects.toThrow(
        `KeycardModule: the zone check failed for zoneUrl ${suite.zone.issuer}: zone metadata issuer "https://other.example" does not equal the configured zoneUrl "${suite.zone.issuer}"`,
      );
    });

    it('F1 an unreachable zone fails the bootstrap (fail-fast is the opt-in)', async () => {
      const gone = await TestZone.start({ audience: R });
      const issuer = gone.issuer;
      await gone.stop();
      await expect(startApp('express', { zoneUrl: issuer, resource: R, zoneCheck: 'fail' })).rejects.toThrow(`the zone check failed for zoneUrl ${issuer}: GET`);
    });

    it('no usable key fails the bootstrap', async () => {
      suite.zone.jwksOverride = { keys: [] };
      await expect(startApp('express', { zoneUrl: suite.zone.issuer, resource: R, zoneCheck: 'fail' })).rejects.toThrow(
        `the zone ${suite.zone.issuer} publishes no key usable with algorithms RS256, PS256, ES256`,
      );
    });

    it('a good zone boots with its metadata and keys loaded once: the first request fetches nothing', async () => {
      suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, zoneCheck: 'fail' });
      expect(suite.zone.counts).toMatchObject({ metadata: 1, jwks: 1 });
      expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(token())), '200', PRM);
      expect(suite.zone.counts).toMatchObject({ metadata: 1, jwks: 1 });
    });
  });

  it("warns when 'resource' is unset and the zone is not on this machine", async () => {
    const offline = async () => {
      throw new TypeError('fetch failed');
    };
    suite.api = await startApp('express', { zoneUrl: 'https://zone.keycard.cloud', fetch: offline });
    expect(suite.api.logger.lines.filter((l) => l.startsWith("'resource' is not set"))).toEqual([
      "'resource' is not set, but the zone https://zone.keycard.cloud is not on this machine: requests that do not reach the API on a loopback address answer 500. Set 'resource' to the URL clients call (e.g. https://api.example.com)",
    ]);
  });

  it("does not warn about 'resource' for a local zone (local development)", async () => {
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer });
    expect(suite.api.logger.lines.some((l) => l.startsWith("'resource' is not set"))).toBe(false);
  });

  it("warns about a declared scope the zone's scopes_supported lacks (a typo found at boot, not by reading a 403)", async () => {
    suite.zone.metadataOverrides = { scopes_supported: ['orders:read', 'orders:write', 'admin'] };
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R, scopesSupported: ['orders:raed'] });
    const line = await logged(suite.api, (l) => l.startsWith('Declared scope'));
    expect(line).toBe(
      `Declared scopes orders:raed, reports:read (in @RequireScopes() or 'scopesSupported') are not in the scopes_supported of zone ${suite.zone.issuer} (orders:read, orders:write, admin): a typo, or a scope still to be created at the zone? Tokens will not carry them`,
    );
  });

  it('denial logs at debug level name the expected issuer and audience, and no token', async () => {
    suite.api = await startApp('express', { zoneUrl: suite.zone.issuer, resource: R });
    const foreign = suite.zone.tokenFor({ scopes: ['orders:read'], audience: 'https://other-api.example' });
    expectOutcome(await send(suite.api.url, 'GET', '/orders', bearer(foreign)), '401 IT scope=orders:read', PRM, [foreign], suite.api.logger.lines);
    expect(suite.api.logger.levels.debug).toContain(`Token refused (audience_mismatch): this API expects tokens from issuer ${suite.zone.issuer} for audience ${R}`);
  });
});
