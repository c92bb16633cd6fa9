// The README's "Testing your app" recipe, as a user writes it: the app's own AppModule, pointed at
// a local TestZone by one override.
import { Test } from '@nestjs/testing';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { KEYCARD_OPTIONS_OVERRIDE } from 'nestjs-keycard';
import { TestZone } from 'nestjs-keycard/testing';
import { AppModule } from './../src/app.module.js';

describe('orders (e2e)', () => {
  let zone: TestZone;
  let app: INestApplication;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: 'https://api.example.com' });
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(KEYCARD_OPTIONS_OVERRIDE)
      .useValue(zone.moduleOptions())
      .compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });

  afterAll(async () => {
    await app.close();
    await zone.stop();
  });

  it('needs a token', async () => {
    const res = await request(app.getHttpServer()).get('/orders').expect(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer (scope="orders:read", )?resource_metadata="/);
  });

  it('serves an agent acting for a user', async () => {
    const token = zone.tokenFor({ agent: 'agent-a', user: 'alice', scopes: ['orders:read'] });
    await request(app.getHttpServer())
      .get('/orders')
      .set('Authorization', `Bearer ${token}`)
      .expect(200, { agent: 'agent-a', user: 'alice' });
  });

  it('refuses a missing scope', async () => {
    const token = zone.tokenFor({ agent: 'agent-a', user: 'alice' });
    await request(app.getHttpServer()).get('/orders').set('Authorization', `Bearer ${token}`).expect(403);
  });
});
