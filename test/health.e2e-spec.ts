import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { KeycardModule, Public, RequireScopes } from '../lib/index.js';
import { KeycardHealthIndicator } from '../lib/health/index.js';
import { TestZone } from '../lib/testing/index.js';
import { send } from './support/http.js';

const R = 'http://127.0.0.1';

@Controller()
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly keycard: KeycardHealthIndicator,
  ) {}

  @Public()
  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.keycard.isHealthy()]);
  }

  @Get('data')
  @RequireScopes('read')
  data() {
    return { ok: true };
  }
}

describe('health indicator (nestjs-keycard/health)', () => {
  let zone: TestZone;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R }), TerminusModule.forRoot({ logger: false })],
      controllers: [HealthController],
      providers: [KeycardHealthIndicator],
    })
    class AppModule {}
    app = await NestFactory.create(AppModule, { logger: false });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await app.close();
    await zone.stop();
  });
  beforeEach(() => zone.reset());

  const health = async () => {
    const res = await send(url, 'GET', '/health');
    return { status: res.status, body: res.json as Record<string, Record<string, Record<string, unknown>>> };
  };

  it('up: metadata and JWKS answer; the age of the keys in use is reported once a token was verified', async () => {
    const before = await health();
    expect(before.status).toBe(200);
    expect(before.body.info.keycard).toEqual({ status: 'up', issuer: zone.issuer, keys: 2, keysAgeSeconds: null });
    expect((await send(url, 'GET', '/data', [['Authorization', `Bearer ${zone.tokenFor({ scopes: ['read'] })}`]])).status).toBe(200);
    const after = await health();
    expect(after.body.info.keycard).toEqual({ status: 'up', issuer: zone.issuer, keys: 2, keysAgeSeconds: 0 });
    expect(zone.counts.metadata).toBeGreaterThanOrEqual(2); // each check asks the zone, not the cache
  });

  it('down when the JWKS fails, while cached keys still verify; up again once the zone recovers', async () => {
    zone.faults.jwks = { kind: 'status', status: 500 };
    const down = await health();
    expect(down.status).toBe(503);
    expect(down.body.error.keycard).toMatchObject({ status: 'down', issuer: zone.issuer });
    expect(String(down.body.error.keycard.reason)).toMatch(/500/);
    const token = zone.tokenFor({ scopes: ['read'] });
    expect((await send(url, 'GET', '/data', [['Authorization', `Bearer ${token}`]])).status).toBe(200);
    expect(JSON.stringify(down.body)).not.toContain(token);

    zone.reset();
    const recovered = await health();
    expect(recovered.status).toBe(200);
    expect(recovered.body.info.keycard.status).toBe('up');
  });

  it('down when the metadata is unreachable', async () => {
    zone.faults.metadata = { kind: 'reset' };
    zone.faults.oidc = { kind: 'reset' };
    const down = await health();
    expect(down.status).toBe(503);
    expect(down.body.error.keycard).toMatchObject({ status: 'down', issuer: zone.issuer });
    zone.reset();
    expect((await health()).status).toBe(200);
  });
});
