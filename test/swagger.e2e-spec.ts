import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, type INestApplication, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ApiSecurity, DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { KeycardModule, Public, RequireScopes } from '../lib/index.js';
import { withKeycardSecurity } from '../lib/swagger/index.js';
import { TestZone } from '../lib/testing/index.js';

const R = 'https://api.example.com';

@Controller('orders')
class OrdersController {
  @Get()
  @RequireScopes('orders:read')
  list() {
    return [];
  }

  @Post()
  @RequireScopes('orders:read', 'orders:write')
  create() {
    return {};
  }

  @Get('mine')
  mine() {
    return [];
  }

  @Public()
  @Get('count')
  count() {
    return 0;
  }

  @Get('signed')
  @ApiSecurity('partner-key')
  signed() {
    return {};
  }

  /** Not a route: must not be described. */
  helper() {
    return 1;
  }
}

@RequireScopes('admin')
@Controller('admin')
class AdminController {
  @Get()
  index() {
    return {};
  }

  @Get('reports')
  @RequireScopes('reports:read')
  reports() {
    return [];
  }
}

async function documentOf(zone: TestZone): Promise<{ app: INestApplication; document: OpenAPIObject }> {
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, scopesSupported: ['profile'] })],
    controllers: [OrdersController, AdminController],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.init();
  const config = new DocumentBuilder().setTitle('Orders').build();
  return { app, document: SwaggerModule.createDocument(app, await withKeycardSecurity(app, config)) };
}

describe('Swagger (nestjs-keycard/swagger)', () => {
  let zone: TestZone;
  let app: INestApplication;
  let document: OpenAPIObject;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    ({ app, document } = await documentOf(zone));
  });
  afterAll(async () => {
    await app.close();
    await zone.stop();
  });

  it('each protected route requires the keycard scheme with its @RequireScopes scopes', () => {
    expect(document.paths['/orders'].get?.security).toEqual([{ keycard: ['orders:read'] }]);
    expect(document.paths['/orders'].post?.security).toEqual([{ keycard: ['orders:read', 'orders:write'] }]);
    expect(document.paths['/orders/mine'].get?.security).toEqual([{ keycard: [] }]);
    expect(document.paths['/admin'].get?.security).toEqual([{ keycard: ['admin'] }]);
    expect(document.paths['/admin/reports'].get?.security).toEqual([{ keycard: ['reports:read'] }]);
  });

  it('public routes carry no requirement; requirements the app set itself are kept', () => {
    expect(document.paths['/orders/count'].get?.security).toBeUndefined();
    expect(document.paths['/orders/signed'].get?.security).toEqual([{ 'partner-key': [] }, { keycard: [] }]);
  });

  it('the discovery endpoints are not in the document', () => {
    expect(Object.keys(document.paths).sort()).toEqual(['/admin', '/admin/reports', '/orders', '/orders/count', '/orders/mine', '/orders/signed']);
  });

  it('the scheme is OAuth 2.0 with the zone endpoints from its metadata and every scope in use', () => {
    const scopes = { admin: '', 'orders:read': '', 'orders:write': '', profile: '', 'reports:read': '' };
    expect(document.components?.securitySchemes?.keycard).toEqual({
      type: 'oauth2',
      description: `Access tokens of the zone ${zone.issuer}`,
      flows: {
        authorizationCode: { authorizationUrl: `${zone.origin}/authorize`, tokenUrl: `${zone.origin}/token`, scopes },
        clientCredentials: { tokenUrl: `${zone.origin}/token`, scopes },
      },
    });
  });

  it('describing twice adds no duplicate requirement', async () => {
    const again = SwaggerModule.createDocument(app, await withKeycardSecurity(app, new DocumentBuilder().build()));
    expect(again.paths['/orders'].get?.security).toEqual([{ keycard: ['orders:read'] }]);
  });

  it('while the zone metadata cannot be fetched, the scheme is a plain bearer one', async () => {
    const down = await TestZone.start({ audience: R });
    down.faults.metadata = { kind: 'status', status: 503 };
    down.faults.oidc = { kind: 'status', status: 503 };
    const { app: other, document: degraded } = await documentOf(down);
    try {
      expect(degraded.components?.securitySchemes?.keycard).toEqual({
        type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: `Access tokens of the zone ${down.issuer}`,
      });
      expect(degraded.paths['/orders'].get?.security).toEqual([{ keycard: ['orders:read'] }]);
    } finally {
      await other.close();
      await down.stop();
    }
  });
});
