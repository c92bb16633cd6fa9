import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, Get, type Provider } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TerminusModule } from '@nestjs/terminus';
import { KeycardModule, RequireScopes, ZoneMetadataService } from '../lib/index.js';
import { KEYCARD_HEALTH_OPTIONS, KeycardHealthIndicator, type KeycardHealthOptions } from '../lib/health/index.js';
import { TestZone } from '../lib/testing/index.js';
import { HealthController } from './support/health-controller.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

const R = 'http://127.0.0.1';

@Controller()
class DataController {
  @Get('data')
  @RequireScopes('read')
  data() {
    return { ok: true };
  }
}

type HealthBody = Record<string, Record<string, Record<string, unknown>>>;

/** An app with the indicator, once its own startup discovery is done (so the counters see only checks). */
async function startHealthApp(zone: TestZone, options?: KeycardHealthOptions): Promise<RunningApp> {
  const providers: Provider[] = [KeycardHealthIndicator];
  if (options) providers.push({ provide: KEYCARD_HEALTH_OPTIONS, useValue: options });
  const api = await startApp('express', { zoneUrl: zone.issuer, resource: R }, {
    imports: [TerminusModule.forRoot({ logger: false })],
    providers,
    controllers: [HealthController, DataController],
  });
  const metadata = api.app.get(ZoneMetadataService);
  while (!metadata.peek()) await new Promise((resolve) => setTimeout(resolve, 10));
  return api;
}

const health = async (api: RunningApp) => {
  const res = await send(api.url, 'GET', '/health');
  return { status: res.status, body: res.json as HealthBody };
};
/** `n` concurrent anonymous checks, each with the time it took. */
const checks = (api: RunningApp, n: number) =>
  Promise.all(Array.from({ length: n }, async () => {
    const started = performance.now();
    const answer = await health(api);
    return { ...answer, ms: performance.now() - started };
  }));

describe('health indicator (nestjs-keycard/health)', () => {
  let zone: TestZone;
  let api: RunningApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startHealthApp(zone);
  });
  afterAll(async () => {
    await api.close();
    await zone.stop();
  });
  /** Moves the module's clock, which is frozen so that the windows do not depend on how fast the machine is. */
  const advance = (ms: number) => (api.clock.frozenAtMs! += ms);
  beforeEach(() => {
    zone.reset();
    api.clock.frozenAtMs = (api.clock.frozenAtMs ?? Date.now()) + 11_000; // past both default windows: a fresh check
  });

  it('up: metadata and JWKS answer; the age of the keys in use is reported once a token was verified', async () => {
    const before = await health(api);
    expect(before.status).toBe(200);
    expect(before.body.info.keycard).toEqual({ status: 'up', issuer: zone.issuer, keys: 2, keysAgeSeconds: null });
    expect((await send(api.url, 'GET', '/data', [['Authorization', `Bearer ${zone.tokenFor({ scopes: ['read'] })}`]])).status).toBe(200);
    const after = await health(api);
    // The zone's answer is cached; the age of the keys is the guard's, read on every check.
    expect(after.body.info.keycard).toEqual({ status: 'up', issuer: zone.issuer, keys: 2, keysAgeSeconds: 0 });
  });

  it('down when the JWKS fails, while cached keys still verify; up again once the zone recovers', async () => {
    zone.faults.jwks = { kind: 'status', status: 500 };
    const down = await health(api);
    expect(down.status).toBe(503);
    expect(down.body.error.keycard).toMatchObject({ status: 'down', issuer: zone.issuer });
    expect(String(down.body.error.keycard.reason)).toMatch(/500/);
    const token = zone.tokenFor({ scopes: ['read'] });
    expect((await send(api.url, 'GET', '/data', [['Authorization', `Bearer ${token}`]])).status).toBe(200);
    expect(JSON.stringify(down.body)).not.toContain(token);

    zone.reset();
    advance(2_000); // the failure window
    const recovered = await health(api);
    expect(recovered.status).toBe(200);
    expect(recovered.body.info.keycard.status).toBe('up');
  });

  it('down when the metadata is unreachable', async () => {
    zone.faults.metadata = { kind: 'reset' };
    zone.faults.oidc = { kind: 'reset' };
    const down = await health(api);
    expect(down.status).toBe(503);
    expect(down.body.error.keycard).toMatchObject({ status: 'down', issuer: zone.issuer });
    zone.reset();
    advance(2_000);
    expect((await health(api)).status).toBe(200);
  });

  it('O19 50 concurrent anonymous checks → MD#1, JWKS#1; 50 more inside the 10 s window → MD#0, JWKS#0; 1 after it → MD#1, JWKS#1', async () => {
    const first = await checks(api, 50);
    expect(first.map((a) => [a.status, a.body.info?.keycard?.status])).toEqual(Array(50).fill([200, 'up']));
    expect(zone.counts).toMatchObject({ metadata: 1, oidc: 0, jwks: 1 });

    zone.reset();
    advance(9_000);
    const inside = await checks(api, 50);
    expect(inside.map((a) => [a.status, a.body.info?.keycard?.status])).toEqual(Array(50).fill([200, 'up']));
    expect(zone.counts).toMatchObject({ metadata: 0, oidc: 0, jwks: 0 });

    advance(1_000);
    const after = await health(api);
    expect(after.status).toBe(200);
    expect(zone.counts).toMatchObject({ metadata: 1, oidc: 0, jwks: 1 });
  });

  it('O20 metadata hangs → all 50 answer 503 "down" within 5 s + 0.5 s, 1 metadata attempt; the failure is kept for its 2 s window', async () => {
    zone.faults.metadata = { kind: 'hang' };
    const answers = await checks(api, 50);
    expect(answers.map((a) => [a.status, a.body.error?.keycard?.status])).toEqual(Array(50).fill([503, 'down']));
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThanOrEqual(5_500);
    expect(zone.counts).toMatchObject({ metadata: 1, oidc: 0, jwks: 0 });

    advance(1_500); // inside the failure window
    expect((await health(api)).status).toBe(503);
    expect(zone.counts).toMatchObject({ metadata: 1, oidc: 0, jwks: 0 });

    zone.reset();
    advance(500); // the window is over: the next check asks the (recovered) zone
    expect((await health(api)).status).toBe(200);
    expect(zone.counts).toMatchObject({ metadata: 1, jwks: 1 });
  });

  it('O20 one 5 s deadline covers the whole check: metadata slow (3 s), then the JWKS hangs → 503 "down" within 5 s + 0.5 s', async () => {
    zone.faults.metadata = { kind: 'slow', delayMs: 3_000 };
    zone.faults.jwks = { kind: 'hang' };
    const answers = await checks(api, 5);
    expect(answers.map((a) => [a.status, a.body.error?.keycard?.status])).toEqual(Array(5).fill([503, 'down']));
    expect(String(answers[0].body.error.keycard.reason)).toBe('the zone did not answer within 5 s');
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThanOrEqual(5_500);
    expect(zone.counts).toMatchObject({ metadata: 1, jwks: 1 });
  });
});

describe('health indicator options (KEYCARD_HEALTH_OPTIONS)', () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(() => zone.stop());

  it('O19 and O20 windows are the options: cacheUpSeconds 30 keeps "up" for 30 s; cacheDownSeconds 0 asks again on every check', async () => {
    const api = await startHealthApp(zone, { cacheUpSeconds: 30, cacheDownSeconds: 0 });
    const advance = (ms: number) => (api.clock.frozenAtMs! += ms);
    try {
      zone.reset();
      api.clock.frozenAtMs = Date.now();
      expect((await health(api)).status).toBe(200);
      advance(29_000);
      expect((await health(api)).status).toBe(200);
      expect(zone.counts).toMatchObject({ metadata: 1, jwks: 1 });

      advance(1_000);
      zone.faults.jwks = { kind: 'status', status: 500 };
      expect((await health(api)).status).toBe(503);
      expect((await health(api)).status).toBe(503);
      expect(zone.counts).toMatchObject({ metadata: 3, jwks: 3 });
    } finally {
      await api.close();
    }
  });

  it.each([
    ['cacheUpSeconds: -1', { cacheUpSeconds: -1 }],
    ['cacheDownSeconds: NaN', { cacheDownSeconds: Number.NaN }],
    ["cacheUpSeconds: '10'", { cacheUpSeconds: '10' }],
  ])('a window that is not a finite number ≥ 0 fails the bootstrap: %s', async (_name, options) => {
    const compiling = Test.createTestingModule({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R }), TerminusModule.forRoot({ logger: false })],
      providers: [KeycardHealthIndicator, { provide: KEYCARD_HEALTH_OPTIONS, useValue: options }],
    }).compile();
    await expect(compiling).rejects.toThrow(/KeycardHealthIndicator: cache(Up|Down)Seconds must be a finite number ≥ 0/);
  });
});
