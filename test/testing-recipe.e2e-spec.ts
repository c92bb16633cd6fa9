// The README's "Testing your app" recipe: an app's own AppModule, configured from the environment,
// pointed at a TestZone by one override in the test.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Agent, KEYCARD_OPTIONS_OVERRIDE, KeycardModule, RequireScopes, type AgentContext } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { send } from './support/http.js';

@Controller('orders')
class OrdersController {
  @Get()
  @RequireScopes('orders:read')
  list(@Agent() agent: AgentContext) {
    return { agent: agent.clientId, user: agent.subject, scopes: agent.scopes };
  }
}

// As in an app: the zone comes from the environment, which tests do not set.
@Module({
  imports: [
    KeycardModule.forRootAsync({
      useFactory: () => ({
        zoneUrl: process.env.KEYCARD_TEST_RECIPE_ZONE_URL ?? '',
        resource: process.env.KEYCARD_TEST_RECIPE_RESOURCE ?? 'https://api.example.com',
        scopesSupported: ['profile'],
      }),
    }),
  ],
  controllers: [OrdersController],
})
class AppModule {}

describe('testing recipe: AppModule pointed at a TestZone', () => {
  let zone: TestZone;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: 'https://api.example.com' });
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(KEYCARD_OPTIONS_OVERRIDE)
      .useValue(zone.moduleOptions())
      .compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await app.close();
    await zone.stop();
  });

  it('tokenFor mints an agent-for-user token in one call', async () => {
    const token = zone.tokenFor({ agent: 'agent-a', user: 'alice', scopes: ['orders:read'] });
    const res = await send(url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ agent: 'agent-a', user: 'alice', scopes: ['orders:read'] });
  });

  it('tokenFor without a user: the agent acts as itself', async () => {
    const res = await send(url, 'GET', '/orders', [['Authorization', `Bearer ${zone.tokenFor({ agent: 'batch-job', scopes: ['orders:read'] })}`]]);
    expect(res.json).toEqual({ agent: 'batch-job', user: 'batch-job', scopes: ['orders:read'] });
  });

  it('the app keeps its own options (scopes, resource); only the zone is the test zone', async () => {
    const prm = await send(url, 'GET', '/.well-known/oauth-protected-resource');
    expect(prm.json).toMatchObject({
      resource: 'https://api.example.com',
      authorization_servers: [zone.issuer],
      scopes_supported: expect.arrayContaining(['profile', 'orders:read']),
    });
  });

  it('a token from another zone, or without the scope, is still refused', async () => {
    const other = await TestZone.start({ audience: 'https://api.example.com' });
    try {
      const foreign = other.tokenFor({ scopes: ['orders:read'] });
      expect((await send(url, 'GET', '/orders', [['Authorization', `Bearer ${foreign}`]])).status).toBe(401);
    } finally {
      await other.stop();
    }
    expect((await send(url, 'GET', '/orders', [['Authorization', `Bearer ${zone.tokenFor({ user: 'alice' })}`]])).status).toBe(403);
  });
});
