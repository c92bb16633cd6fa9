import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, type INestApplication, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ApiSecurity, DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { McpController, McpHttpControllerFor, McpStrategy, StreamableHttpTransport, Tool } from '@rekog/mcp-nest';
import { KeycardModule, OptionalAuth, Public, RequireScopes } from '../lib/index.js';
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

  @Get('export')
  @RequireScopes('orders:read')
  @RequireScopes.anyOf(['orders:admin'], ['orders:export', 'audit:read'])
  export() {
    return [];
  }

  @Get('greeting')
  @OptionalAuth()
  greeting() {
    return 'hello';
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

const mcpTransport = new StreamableHttpTransport();

@McpController()
class OrderTools {
  @Tool({ name: 'purge_orders', description: 'Deletes every order' })
  @RequireScopes('orders:purge')
  purge() {
    return { purged: true };
  }
}

@RequireScopes('mcp:tools')
@Controller('mcp')
class OrdersMcpHttp extends McpHttpControllerFor(mcpTransport) {}

/** The app's document, built as the README's `main.ts` does (before `init()`) or after `init()`. */
async function documentOf(zone: TestZone, order: 'before init' | 'after init' = 'after init'): Promise<{ app: INestApplication; document: OpenAPIObject }> {
  @Module({
    imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, scopesSupported: ['profile'] })],
    controllers: [OrdersController, AdminController, OrderTools, OrdersMcpHttp],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger: false });
  app.connectMicroservice({ strategy: new McpStrategy({ name: 'orders', version: '1.0.0', transports: [mcpTransport], logging: false }) });
  if (order === 'after init') await app.init();
  const config = new DocumentBuilder().setTitle('Orders').build();
  return { app, document: SwaggerModule.createDocument(app, await withKeycardSecurity(app, config)) };
}

describe('Swagger (nestjs-keycard/swagger)', () => {
  let zone: TestZone;
  let app: INestApplication;
  let document: OpenAPIObject;
  let early: { app: INestApplication; document: OpenAPIObject };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    early = await documentOf(zone, 'before init'); // first, so nothing is described yet
    ({ app, document } = await documentOf(zone));
  });
  afterAll(async () => {
    await early.app.close();
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

  it('RequireScopes.anyOf: one requirement per path (OpenAPI alternatives), each with the all-of scopes', () => {
    expect(document.paths['/orders/export'].get?.security).toEqual([
      { keycard: ['orders:read', 'orders:admin'] },
      { keycard: ['orders:read', 'orders:export', 'audit:read'] },
    ]);
  });

  it('OptionalAuth: anonymous callers are served too, so the empty requirement comes first', () => {
    expect(document.paths['/orders/greeting'].get?.security).toEqual([{}, { keycard: [] }]);
    expect(early.document.paths['/orders/greeting'].get?.security).toEqual([{}, { keycard: [] }]);
  });

  it('public routes carry no requirement; requirements the app set itself are kept', () => {
    expect(document.paths['/orders/count'].get?.security).toBeUndefined();
    expect(document.paths['/orders/signed'].get?.security).toEqual([{ 'partner-key': [] }, { keycard: [] }]);
  });

  it('the discovery endpoints are not in the document', () => {
    expect(Object.keys(document.paths).sort()).toEqual(['/admin', '/admin/reports', '/mcp', '/orders', '/orders/count', '/orders/export', '/orders/greeting', '/orders/mine', '/orders/signed']);
  });

  it('an mcp-nest endpoint (handlers inherited from its base) requires the scheme with its controller scopes', () => {
    const operations = Object.values(document.paths['/mcp']);
    expect(operations.length).toBeGreaterThan(0);
    for (const operation of operations) expect((operation as { security?: unknown }).security).toEqual([{ keycard: ['mcp:tools'] }]);
  });

  it('the scheme is OAuth 2.0 with the zone endpoints from its metadata and every scope in use (MCP tools included)', () => {
    const scopes = {
      admin: '', 'audit:read': '', 'mcp:tools': '', 'orders:admin': '', 'orders:export': '', 'orders:purge': '', 'orders:read': '', 'orders:write': '', profile: '', 'reports:read': '',
    };
    expect(document.components?.securitySchemes?.keycard).toEqual({
      type: 'oauth2',
      description: `Access tokens of the zone ${zone.issuer}`,
      flows: {
        authorizationCode: { authorizationUrl: `${zone.origin}/authorize`, tokenUrl: `${zone.origin}/token`, scopes },
        clientCredentials: { tokenUrl: `${zone.origin}/token`, scopes },
      },
    });
  });

  it('built before app.init() (the README\'s main.ts order), the document is the same: scopes and requirements', () => {
    expect(early.document.components).toEqual(document.components);
    expect(early.document.paths).toEqual(document.paths);
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
