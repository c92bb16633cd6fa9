/**
 * Discovery must hold however the app is built (catalogue §M): a global prefix, URI / header /
 * media-type versioning with a default version, several resources, and development mode with
 * hostile `Host` headers. Every challenge's `resource_metadata` must name a document that answers.
 */
import { describe, expect, it } from '@jest/globals';
import { VersioningType, type INestApplication } from '@nestjs/common';
import { ERROR_DESCRIPTIONS } from '../lib/resource-server/keycard.exceptions.js';
import { type TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { baseClaims, bearer, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { parseChallenge, send, type HttpAnswer } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';
import { zoneSuite } from './support/zone-suite.js';

type Headers = [string, string][];

interface Shape {
  row: 'M12' | 'M13' | 'M14';
  name: string;
  configure: (app: INestApplication) => void;
  /** Where `GET /orders` (needs `orders:read`) lives in this shape: one path per version. */
  orders: string[];
  /** Where the token-only routes `/me` and `/admin` live. */
  others: string[];
  /** What a client sends to reach the routes (a version header, or nothing). */
  versioned: Headers;
  /** Header sets discovery must answer whatever they say: none, a version, an unknown version. */
  clients: Headers[];
  /** A request the shape must refuse with the router's 404, proving the shape is in force. */
  absent: { path: string; headers: Headers };
}

const SHAPES: Shape[] = [
  {
    row: 'M12',
    name: "URI versioning, defaultVersion '1'",
    configure: (app) => app.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' }),
    orders: ['/v1/orders'],
    others: ['/v1/me', '/v1/admin'],
    versioned: [],
    clients: [[]],
    absent: { path: '/orders', headers: [] },
  },
  {
    row: 'M12',
    name: "URI versioning, defaultVersion ['1','2']",
    configure: (app) =>
      app.enableVersioning({ type: VersioningType.URI, defaultVersion: ['1', '2'] }),
    orders: ['/v1/orders', '/v2/orders'],
    others: ['/v1/me', '/v2/admin'],
    versioned: [],
    clients: [[]],
    absent: { path: '/v3/orders', headers: [] },
  },
  {
    row: 'M13',
    name: "HEADER versioning (X-API-Version), defaultVersion '1'",
    configure: (app) =>
      app.enableVersioning({
        type: VersioningType.HEADER,
        header: 'X-API-Version',
        defaultVersion: '1',
      }),
    orders: ['/orders'],
    others: ['/me', '/admin'],
    versioned: [['X-API-Version', '1']],
    clients: [[], [['X-API-Version', '1']], [['X-API-Version', '7']]],
    absent: { path: '/orders', headers: [['X-API-Version', '7']] },
  },
  {
    row: 'M13',
    name: "MEDIA_TYPE versioning (v=), defaultVersion '1'",
    configure: (app) =>
      app.enableVersioning({ type: VersioningType.MEDIA_TYPE, key: 'v=', defaultVersion: '1' }),
    orders: ['/orders'],
    others: ['/me', '/admin'],
    versioned: [['Accept', 'application/json;v=1']],
    clients: [[], [['Accept', 'application/json;v=1']], [['Accept', 'application/json;v=7']]],
    absent: { path: '/orders', headers: [['Accept', 'application/json;v=7']] },
  },
  {
    row: 'M14',
    name: "setGlobalPrefix('api') without exclude",
    configure: (app) => app.setGlobalPrefix('api'),
    orders: ['/api/orders'],
    others: ['/api/me', '/api/admin'],
    versioned: [],
    clients: [[]],
    absent: { path: '/orders', headers: [] },
  },
  {
    row: 'M14',
    name: "setGlobalPrefix('api') and URI versioning ['1','2']",
    configure: (app) => {
      app.setGlobalPrefix('api');
      app.enableVersioning({ type: VersioningType.URI, defaultVersion: ['1', '2'] });
    },
    orders: ['/api/v1/orders', '/api/v2/orders'],
    others: ['/api/v1/me', '/api/v2/admin'],
    versioned: [],
    clients: [[]],
    absent: { path: '/v1/orders', headers: [] },
  },
];

/** Path and query of an absolute URL, to ask the app under test for it over loopback. */
const pathOf = (url: string) => {
  const parsed = new URL(url);
  return parsed.pathname + parsed.search;
};

/** No TypeError, stack trace or unforeseen error in what the module logged. */
function expectCleanLogs(lines: readonly string[]): void {
  const text = lines.join('\n');
  expect(text).not.toMatch(/TypeError|Unexpected error|\n\s+at /);
}

/**
 * A 401 without an error code that points at `prm` (scope, if any, is the route's: Q12). Status,
 * challenge and body are asserted; the route exists (not the router's 404).
 */
function expectBareChallenge(res: HttpAnswer, prm: string): void {
  expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: 401 });
  const challenge = parseChallenge(res.headers['www-authenticate']);
  expect(challenge?.scheme).toBe('Bearer');
  expect(new Set(challenge!.names).size).toBe(challenge!.names.length);
  expect(challenge!.params.error).toBeUndefined();
  expect(challenge!.params.resource_metadata).toBe(prm);
  expect(res.headers['content-type']).toMatch(/application\/json/);
  expect((res.json as { error?: string }).error).toBe('unauthorized');
}

/** GETs the document a challenge points at; it must be served, for exactly `resource`. */
async function expectDocument(
  api: RunningApp,
  zone: TestZone,
  prm: string,
  resource: string,
  headers: Headers = [],
): Promise<void> {
  const doc = await send(api.url, 'GET', pathOf(prm), headers);
  expect({ status: doc.status, text: doc.text.slice(0, 200) }).toMatchObject({ status: 200 });
  expect(doc.headers['content-type']).toMatch(/^application\/json/);
  expect(doc.json).toMatchObject({
    resource,
    authorization_servers: [zone.issuer],
    bearer_methods_supported: ['header'],
  });
}

describe.each(ADAPTERS)('discovery in every app shape over %s', (adapter) => {
  const suite = zoneSuite();

  describe.each(SHAPES)('$name', (shape) => {
    const title =
      shape.row === 'M14'
        ? `M14 ${shape.name}: discovery answers at the origin root (chosen outcome: it just works, no bootstrap failure); every challenge's resource_metadata answers 200`
        : `${shape.row} ${shape.name}: GET /.well-known/oauth-protected-resource → 200, and every challenge's resource_metadata answers 200`;
    it(title, async () => {
      suite.api = await startApp(
        adapter,
        { zoneUrl: suite.zone.issuer, resource: R },
        { configure: shape.configure },
      );
      const absent = await send(suite.api.url, 'GET', shape.absent.path, shape.absent.headers);
      expect(absent.status).toBe(404);
      const junk = 'junk.not-a.token';
      for (const headers of shape.clients) {
        await expectDocument(suite.api, suite.zone, PRM, R, headers);
        const mirror = await send(
          suite.api.url,
          'GET',
          '/.well-known/oauth-authorization-server',
          headers,
        );
        expect(mirror.status).toBe(200);
        expect(mirror.json).toEqual(suite.zone.metadata());
      }
      const versioned = shape.versioned;
      for (const path of [...shape.orders, ...shape.others]) {
        const bare = await send(suite.api.url, 'GET', path, versioned);
        expectBareChallenge(bare, PRM);
        await expectDocument(
          suite.api,
          suite.zone,
          parseChallenge(bare.headers['www-authenticate'])!.params.resource_metadata,
          R,
        );
      }
      expectOutcome(
        await send(suite.api.url, 'GET', shape.others[0], [...versioned, ...bearer(junk)]),
        '401 IT',
        PRM,
        [junk],
        suite.api.logger.lines,
      );
      const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone));
      expectOutcome(
        await send(suite.api.url, 'GET', shape.orders[0], [...versioned, ...bearer(token)]),
        '200',
        PRM,
        [token],
        suite.api.logger.lines,
      );
      expectCleanLogs(suite.api.logger.lines);
    });

    it(`M9 ${shape.name}, resources [R, one per path of GET /orders]: each resource's challenge resource_metadata → 200, a document for that resource`, async () => {
      const pathResources = shape.orders.map((path) => `${R}${path}`);
      const resource = [R, ...pathResources];
      suite.api = await startApp(
        adapter,
        { zoneUrl: suite.zone.issuer, resource },
        { configure: shape.configure },
      );
      const headers = shape.versioned;
      const seen = new Set<string>();
      const routes = [
        ...shape.orders.map((path, i) => [path, pathResources[i]]),
        ...shape.others.map((path) => [path, R]),
      ];
      for (const [path, expected] of routes) {
        const prm = `${new URL(expected).origin}/.well-known/oauth-protected-resource${new URL(expected).pathname.replace(/\/$/, '')}`;
        const bare = await send(suite.api.url, 'GET', path, headers);
        expectBareChallenge(bare, prm);
        await expectDocument(suite.api, suite.zone, prm, expected, headers);
        const junk = 'junk.not-a.token';
        const refused = await send(suite.api.url, 'GET', path, [...headers, ...bearer(junk)]);
        expect(refused.status).toBe(401);
        expect(parseChallenge(refused.headers['www-authenticate'])!.params).toMatchObject({
          error: 'invalid_token',
          resource_metadata: prm,
        });
        seen.add(expected);
      }
      expect([...seen].sort()).toEqual([...resource].sort()); // every configured resource was challenged for
      expectCleanLogs(suite.api.logger.lines);
    });
  });

  it("M14 setGlobalPrefix('api') with the exclude earlier versions asked for still serves discovery at the root", async () => {
    suite.api = await startApp(
      adapter,
      { zoneUrl: suite.zone.issuer, resource: R },
      {
        configure: (app) => app.setGlobalPrefix('api', { exclude: ['.well-known/{*path}'] }),
      },
    );
    await expectDocument(suite.api, suite.zone, PRM, R);
    expectBareChallenge(await send(suite.api.url, 'GET', '/api/me'), PRM);
    expect((await send(suite.api.url, 'GET', '/.well-known/oauth-authorization-server')).status).toBe(
      200,
    );
  });

  it('M9 a resource deeper than four path segments is served too', async () => {
    const deep = `${R}/api/v1/tenants/acme/orders`;
    suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer, resource: [R, deep] });
    await expectDocument(
      suite.api,
      suite.zone,
      `${R}/.well-known/oauth-protected-resource/api/v1/tenants/acme/orders`,
      deep,
    );
    await expectDocument(suite.api, suite.zone, PRM, R);
    expect(
      (
        await send(
          suite.api.url,
          'GET',
          '/.well-known/oauth-protected-resource/api/v1/tenants/acme/other',
        )
      ).status,
    ).toBe(404);
  });

  describe('no resource configured (development mode, Q15)', () => {
    const HOSTS = [
      'localhost:99999',
      'localhost:0',
      '[::1]:70000',
      'localhost:abc',
      'localhost:65536',
      'localhost:',
      '[::1',
      'local_host:3000',
      'xn--a.localhost:3000',
    ];

    it.each(HOSTS)(
      'M15 Host %s → guard 400 IR (chosen over 401∅, no resource_metadata: no resource can be named), discovery 400; never 500, never a TypeError',
      async (host) => {
        suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer });
        const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone, { aud: suite.api.url }));
        expectOutcome(
          await send(suite.api.url, 'GET', '/me', [['Host', host]]),
          '400 IR',
          undefined,
          [],
          suite.api.logger.lines,
        );
        expectOutcome(
          await send(suite.api.url, 'GET', '/orders', [['Host', host], ...bearer(token)]),
          '400 IR',
          undefined,
          [token],
          suite.api.logger.lines,
        );
        for (const method of ['GET', 'HEAD']) {
          const doc = await send(suite.api.url, method, '/.well-known/oauth-protected-resource', [
            ['Host', host],
          ]);
          expect(doc.status).toBe(400);
          expect(doc.headers['www-authenticate']).toBeUndefined();
          if (method === 'GET')
            expect(doc.json).toEqual({
              error: 'invalid_request',
              error_description: ERROR_DESCRIPTIONS.request,
            });
        }
        expectCleanLogs(suite.api.logger.lines);
      },
    );

    it('M15 a loopback Host with a valid port still derives the resource from the origin', async () => {
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer });
      const port = new URL(suite.api.url).port;
      for (const origin of [`http://localhost:${port}`, `http://[::1]:${port}`, suite.api.url]) {
        const host = new URL(origin).host;
        const prm = `${origin}/.well-known/oauth-protected-resource`;
        expectBareChallenge(await send(suite.api.url, 'GET', '/me', [['Host', host]]), prm);
        await expectDocument(suite.api, suite.zone, prm, origin, [['Host', host]]);
        const token = zoneSigned(suite.zone, T0_HEADER, baseClaims(suite.zone, { aud: origin }));
        expectOutcome(
          await send(suite.api.url, 'GET', '/me', [['Host', host], ...bearer(token)]),
          '200',
          prm,
          [token],
          suite.api.logger.lines,
        );
      }
      expectCleanLogs(suite.api.logger.lines);
    });

    it('M15 two Host headers (RFC 9112 §3.2) → 400 IR', async () => {
      suite.api = await startApp(adapter, { zoneUrl: suite.zone.issuer });
      const host = new URL(suite.api.url).host;
      // Node's parser lets both through (it keeps the first in req.headers): the module must look.
      expectOutcome(
        await send(suite.api.url, 'GET', '/me', [
          ['Host', host],
          ['Host', host],
        ]),
        '400 IR',
        undefined,
      );
      const doc = await send(suite.api.url, 'GET', '/.well-known/oauth-protected-resource', [
        ['Host', host],
        ['Host', 'localhost:1'],
      ]);
      expect(doc.status).toBe(400);
    });

    it("M9 development mode under a prefix and URI versioning: the derived resource's challenge answers 200", async () => {
      suite.api = await startApp(
        adapter,
        { zoneUrl: suite.zone.issuer },
        {
          configure: (app) => {
            app.setGlobalPrefix('api');
            app.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' });
          },
        },
      );
      const prm = `${suite.api.url}/.well-known/oauth-protected-resource`;
      const bare = await send(suite.api.url, 'GET', '/api/v1/me');
      expectBareChallenge(bare, prm);
      await expectDocument(suite.api, suite.zone, prm, suite.api.url);
    });
  });
});
