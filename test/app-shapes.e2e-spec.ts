/**
 * Catalogue §M: the decision must hold however the app is built. Decorator precedence (Q13),
 * several resources (Q17), preflight-shaped requests (Q14) and the scope of 401s (Q12), over
 * Express and Fastify, each against a real Nest app and the real local zone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { All, Controller, Get, Options, Param, VersioningType } from '@nestjs/common';
import { Agent, Public, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome, type Outcome } from './support/denials.js';
import { baseClaims, bearer, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { parseChallenge, send, sendVerbatim, type HttpAnswer } from './support/http.js';
import { ADAPTERS, startApp, type AdapterName, type RunningApp } from './support/keycard-app.js';

const R2 = `${R}/orders`;
const PRM2 = `${R}/.well-known/oauth-protected-resource/orders`;

/** How often each handler below ran: a refused request must never reach one. */
const ran: Record<string, number> = {};
const served = (name: string) => {
  ran[name] = (ran[name] ?? 0) + 1;
  return { served: name };
};

@RequireScopes('admin')
@Controller('m1')
class ScopedClassWithPublicMethod {
  @Public()
  @Get()
  open() {
    return served('m1');
  }
}

@Public()
@Controller('m2')
class PublicClassWithScopedMethod {
  @RequireScopes('admin')
  @Get()
  guarded(@Agent('clientId') clientId: string) {
    return { ...served('m2'), clientId };
  }
}

/** M4: the base carries M2's decorators and is never registered itself. */
@Public()
@Controller('m4-base')
class PublicBaseController {
  @RequireScopes('admin')
  @Get()
  guarded() {
    return served('m4');
  }
}

@Controller('m4')
class SubclassOnly extends PublicBaseController {}

/** M5: the only method overrides the class's scope, so `a` is required nowhere. */
@RequireScopes('a')
@Controller('m5')
class MethodOverridesClass {
  @RequireScopes('b')
  @Get()
  b() {
    return served('m5');
  }
}

@Controller()
class PreflightTargets {
  @All('proxy')
  @RequireScopes('admin')
  proxy() {
    return served('proxy');
  }

  @Options('opt')
  @RequireScopes('admin')
  opt() {
    return served('opt');
  }
}

@Controller('orders')
class OrderController {
  @Get(':id')
  @RequireScopes('orders:read')
  one(@Param('id') id: string) {
    return { id };
  }
}

@Controller('admin')
class TokenOnlyController {
  @Get()
  index() {
    return { admin: true };
  }
}

/** One handler, two paths under different resources: chosen by the pattern the router matched. */
@Controller()
class TwoPaths {
  @Get(['orders/multi/:id', 'admin/multi'])
  both() {
    return { both: true };
  }
}

/** A route parameter where a resource path is compared: the decoded request path decides. */
@Controller('t/:tenant')
class TenantData {
  @Get('data')
  data(@Param('tenant') tenant: string) {
    return { tenant };
  }
}

const SHAPES = [ScopedClassWithPublicMethod, PublicClassWithScopedMethod, SubclassOnly, MethodOverridesClass, PreflightTargets, OrderController, TokenOnlyController];
const PREFLIGHT: [string, string][] = [['Origin', 'https://app.example'], ['Access-Control-Request-Method', 'POST']];

describe.each(ADAPTERS)('app shapes over %s', (adapter: AdapterName) => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(() => zone.stop());

  const token = (claims: Record<string, unknown> = {}) => zoneSigned(zone, T0_HEADER, baseClaims(zone, claims));

  /** Asserts the outcome, with the token counted as a secret that must appear nowhere. */
  function expectAnswer(api: RunningApp, res: HttpAnswer, outcome: Outcome, prm: string, sent?: string) {
    expectOutcome(res, outcome, prm, sent === undefined ? [] : [sent], api.logger.lines);
  }

  /** `GET target` with a token for `aud` (verbatim target, none when aud is undefined), for each row. */
  async function expectAll(api: RunningApp, rows: [target: string, aud: string | undefined, outcome: Outcome, prm: string][]) {
    for (const [target, aud, outcome, prm] of rows) {
      const sent = aud === undefined ? undefined : token({ aud });
      const res = await sendVerbatim(api.url, 'GET', target, sent === undefined ? [] : bearer(sent));
      expectAnswer(api, res, outcome, prm, sent);
    }
  }

  describe('one resource, decorators on classes, methods and base classes', () => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: SHAPES });
    });
    afterAll(() => api.close());

    const call = async (path: string, outcome: Outcome, sent?: string, method = 'GET', extra: [string, string][] = []) => {
      const res = await send(api.url, method, path, [...(sent ? bearer(sent) : []), ...extra]);
      expectAnswer(api, res, outcome, PRM, sent);
      return res;
    };

    it('M1 class @RequireScopes(admin), method @Public(), no token → 200 (Q13)', async () => {
      const res = await call('/m1', '200');
      expect(res.json).toEqual({ served: 'm1' });
    });

    it('M2 class @Public(), method @RequireScopes(admin): no token → 401∅ scope=admin; scope profile → 403 IS(admin); scope admin → 200', async () => {
      const before = ran.m2 ?? 0;
      await call('/m2', '401∅ scope=admin');
      await call('/m2', '403:admin', token({ scope: 'profile' }));
      expect(ran.m2 ?? 0).toBe(before);
      const res = await call('/m2', '200', token({ scope: 'admin' }));
      expect(res.json).toEqual({ served: 'm2', clientId: 'cli-1' });
    });

    it('M4 M2 decorators on a base controller, only the subclass registered → same outcomes as M2', async () => {
      const before = ran.m4 ?? 0;
      await call('/m4', '401∅ scope=admin');
      await call('/m4', '403:admin', token({ scope: 'profile' }));
      expect(ran.m4 ?? 0).toBe(before);
      await call('/m4', '200', token({ scope: 'admin' }));
      expect((await send(api.url, 'GET', '/m4-base')).status).toBe(404);
    });

    it('M5 class @RequireScopes(a), method @RequireScopes(b): token with b → 200, with a only → 403 IS(b)', async () => {
      await call('/m5', '200', token({ scope: 'b' }));
      await call('/m5', '403:b', token({ scope: 'a' }));
      await call('/m5', '401∅ scope=b');
    });

    it('M10 @All / @Options with @RequireScopes(admin), no enableCors: preflight-shaped OPTIONS → 401∅ scope=admin, handler never runs (Q14)', async () => {
      for (const path of ['/proxy', '/opt']) {
        const name = path.slice(1);
        const before = ran[name] ?? 0;
        const res = await call(path, '401∅ scope=admin', undefined, 'OPTIONS', PREFLIGHT);
        expect(res.headers['access-control-allow-origin']).toBeUndefined();
        expect(ran[name] ?? 0).toBe(before);
        await call(path, '403:admin', token({ scope: 'orders:read' }), 'OPTIONS', PREFLIGHT);
        expect(ran[name] ?? 0).toBe(before);
      }
    });

    it('M23 route requiring orders:read: no token → 401∅ + scope; expired → 401 IT + scope; route without required scopes → no scope (Q12)', async () => {
      await call('/orders/1', '401∅ scope=orders:read');
      const now = Math.floor(Date.now() / 1000);
      await call('/orders/1', '401 IT scope=orders:read', token({ iat: now - 900, exp: now - 600 }));
      await call('/admin', '401∅');
      await call('/admin', '401 IT', token({ iat: now - 900, exp: now - 600 }));
      // A 403 names the required scopes as before; a 400 carries no scope.
      await call('/orders/1', '403:orders:read', token({ scope: 'profile' }));
      const twoTokens = await send(api.url, 'GET', '/orders/1', [...bearer(token()), ...bearer(token())]);
      expectAnswer(api, twoTokens, '400 IR', PRM);
    });

    it('scopes_supported lists exactly the scopes some route requires (nearest declaration), never an overridden one', async () => {
      const doc = await send(api.url, 'GET', '/.well-known/oauth-protected-resource');
      expect(doc.status).toBe(200);
      const scopes = (doc.json as { scopes_supported: string[] }).scopes_supported;
      expect([...scopes].sort()).toEqual(['admin', 'b', 'orders:read']);
    });
  });

  describe('CORS enabled', () => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, {
        controllers: [PreflightTargets, OrderController],
        configure: (app) => app.enableCors(),
      });
    });
    afterAll(() => api.close());

    it('M11 a preflight to a protected GET-only route is answered by the CORS layer too (2xx, no challenge; catalogue A33 holds)', async () => {
      const res = await send(api.url, 'OPTIONS', '/orders/1', [['Origin', 'https://app.example'], ['Access-Control-Request-Method', 'GET']]);
      expect(res.status).toBeGreaterThanOrEqual(200);
      expect(res.status).toBeLessThan(300);
      expect(res.headers['access-control-allow-origin']).toBeDefined();
      expect(res.headers['www-authenticate']).toBeUndefined();
      expectAnswer(api, await send(api.url, 'GET', '/orders/1', [['Origin', 'https://app.example']]), '401∅ scope=orders:read', PRM);
    });

    it('M11 with app.enableCors(): the preflight is answered 2xx by CORS, the handler never runs; the real request still needs a token', async () => {
      for (const path of ['/proxy', '/opt']) {
        const name = path.slice(1);
        const before = ran[name] ?? 0;
        const preflight = await send(api.url, 'OPTIONS', path, PREFLIGHT);
        expect(preflight.status).toBeGreaterThanOrEqual(200);
        expect(preflight.status).toBeLessThan(300);
        expect(preflight.headers['access-control-allow-origin']).toBeDefined();
        expect(preflight.headers['www-authenticate']).toBeUndefined();
        expect(ran[name] ?? 0).toBe(before);
      }
      const before = ran.proxy ?? 0;
      const real = await send(api.url, 'GET', '/proxy', [['Origin', 'https://app.example']]);
      expectAnswer(api, real, '401∅ scope=admin', PRM);
      expect(real.headers['access-control-expose-headers']).toMatch(/WWW-Authenticate/i);
      expect(ran.proxy ?? 0).toBe(before);
      const sent = token({ scope: 'admin' });
      expectAnswer(api, await send(api.url, 'GET', '/proxy', bearer(sent)), '200', PRM, sent);
      expect(ran.proxy).toBe(before + 1);
    });
  });

  describe('contradictions fail the bootstrap (Q13)', () => {
    it('M3 @Public() and @RequireScopes() on the same method, or on the same class → bootstrap fails naming controller and handler', async () => {
      @Controller('both-on-method')
      class BothOnMethod {
        @Public()
        @RequireScopes('admin')
        @Get()
        handler() {
          return {};
        }
      }
      @Public()
      @RequireScopes('admin')
      @Controller('both-on-class')
      class BothOnClass {
        @Get()
        list() {
          return {};
        }
      }
      await expect(startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: [BothOnMethod] })).rejects.toThrow(
        /@Public\(\) and @RequireScopes\(\) are both declared on BothOnMethod\.handler/,
      );
      await expect(startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: [BothOnClass] })).rejects.toThrow(
        /@Public\(\) and @RequireScopes\(\) are both declared on BothOnClass \(handler BothOnClass\.list\)/,
      );
    });
  });

  describe.each([
    ['[R, R2]', [R, R2]],
    ['[R2, R]', [R2, R]],
  ])('resources %s (Q17)', (_order, resource) => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zoneUrl: zone.issuer, resource }, { controllers: [OrderController, TokenOnlyController, TwoPaths] });
    });
    afterAll(() => api.close());

    it(`M6 one handler with a path under R2 and one under R: each path judged by its own resource (list order ${_order})`, async () => {
      await expectAll(api, [
        ['/orders/multi/1', R, '401 IT', PRM2],
        ['/orders/multi/1', R2, '200', PRM2],
        ['/admin/multi', R2, '401 IT', PRM],
        ['/admin/multi', R, '200', PRM],
      ]);
    });

    it(`M6 aud=R on /orders/1 → 401 IT (PRM of R2); aud=R2 on /orders/1 → 200; aud=R2 on /admin → 401 IT (PRM of R); aud=R on /admin → 200 (list order ${_order})`, async () => {
      await expectAll(api, [
        ['/orders/1', R, '401 IT scope=orders:read', PRM2],
        ['/orders/1', R2, '200', PRM2],
        ['/admin', R2, '401 IT', PRM],
        ['/admin', R, '200', PRM],
        // Refusals without a token point at the resource of the route, too.
        ['/orders/1', undefined, '401∅ scope=orders:read', PRM2],
        ['/admin', undefined, '401∅', PRM],
      ]);
    });

    it(`M7 aud=R on respelled /orders/1 paths → never 200: 401 IT (PRM of R2) or the router's 404 (list order ${_order})`, async () => {
      const forR = token({ aud: R });
      const spellings = [
        '/ORDERS/1', '/Orders/1', '/%6frders/1', '/ord%65rs/1', '/orders/1#x', '/orders/1/', '/orders//1', '/./orders/1',
        '/orders/1;x', '/orders/%31', '/admin/../orders/1',
      ];
      for (const target of spellings) {
        const res = await sendVerbatim(api.url, 'GET', target, bearer(forR));
        const seen = { target, status: res.status };
        expect(seen).not.toEqual({ target, status: 200 });
        if (res.status === 404) {
          expect(res.headers['www-authenticate']).toBeUndefined();
        } else {
          expect(seen).toEqual({ target, status: 401 });
          expectAnswer(api, res, '401 IT scope=orders:read', PRM2, forR);
        }
      }
      // The same spellings with a token for R2 are judged against R2 wherever the router serves them.
      const forR2 = token({ aud: R2 });
      for (const target of spellings) {
        const res = await sendVerbatim(api.url, 'GET', target, bearer(forR2));
        expect({ target, status: res.status }).toEqual({ target, status: res.status === 404 ? 404 : 200 });
      }
    });
  });

  describe('resources under a global prefix and URI versioning', () => {
    const V1 = `${R}/api/v1/orders`;
    const PRM_V1 = `${R}/.well-known/oauth-protected-resource/api/v1/orders`;
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zoneUrl: zone.issuer, resource: [V1, R] }, {
        controllers: [OrderController, TokenOnlyController],
        configure: (app) => {
          app.setGlobalPrefix('api');
          app.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' });
        },
      });
    });
    afterAll(() => api.close());

    it('M6 routes are matched with their global prefix and version: aud=R on /api/v1/orders/1 → 401 IT (PRM of R/api/v1/orders); its own audience → 200', async () => {
      await expectAll(api, [
        ['/api/v1/orders/1', R, '401 IT scope=orders:read', PRM_V1],
        ['/api/v1/orders/1', V1, '200', PRM_V1],
        ['/api/v1/admin', V1, '401 IT', PRM],
        ['/api/v1/admin', R, '200', PRM],
      ]);
      const folded = await send(api.url, 'GET', '/api/V1/Orders/1', bearer(token({ aud: R })));
      if (adapter === 'express') expectAnswer(api, folded, '401 IT scope=orders:read', PRM_V1); // Express folds case
      else expect(folded.status).toBe(404); // Fastify does not
    });
  });

  describe('a route parameter where a resource path is compared', () => {
    const ACME = `${R}/t/acme`;
    const PRM_ACME = `${R}/.well-known/oauth-protected-resource/t/acme`;
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zoneUrl: zone.issuer, resource: [R, ACME] }, { controllers: [TenantData] });
    });
    afterAll(() => api.close());

    it('M7 /t/:tenant/data under resources [R, R/t/acme]: the decoded path decides, so /t/%61cme/data is acme\'s too', async () => {
      await expectAll(api, [
        ['/t/acme/data', R, '401 IT', PRM_ACME],
        ['/t/%61cme/data', R, '401 IT', PRM_ACME],
        ['/t/acme/data', ACME, '200', PRM_ACME],
        ['/t/other/data', R, '200', PRM],
        ['/t/other/data', ACME, '401 IT', PRM],
      ]);
    });

    it('M7 /t/:tenant/data under resources [R, R/t/acme]: an encoded slash or backslash in the deciding segment (/t/acme%2F/data, /t/acme%2Fx/data, /t/acme%5C/data) → 400 IR, never judged by R', async () => {
      for (const target of ['/t/acme%2F/data', '/t/acme%2fx/data', '/t/acme%5C/data', '/t/%2Facme/data']) {
        const forR = token({ aud: R });
        const res = await sendVerbatim(api.url, 'GET', target, bearer(forR));
        expect({ target, status: res.status }).toEqual({ target, status: 400 });
        expectOutcome(res, '400 IR', undefined, [forR], api.logger.lines);
      }
    });
  });

  describe('a protected route no resource covers', () => {
    let api: RunningApp;
    beforeAll(async () => {
      api = await startApp(adapter, { zoneUrl: zone.issuer, resource: [R2] }, { controllers: [OrderController, TokenOnlyController] });
    });
    afterAll(() => api.close());

    it('M8 resource [R2] only, protected /admin outside it → 500 resource-not-configured on request (chosen over a bootstrap failure), never judged against R2', async () => {
      expect(api.logger.lines.some((line) => line.includes("No configured 'resource' covers TokenOnlyController.index (/admin)"))).toBe(true);
      const forR2 = token({ aud: R2 });
      for (const headers of [bearer(forR2), []]) {
        const res = await send(api.url, 'GET', '/admin', headers);
        expect(res.status).toBe(500);
        expect(res.json).toEqual({ error: 'server_error', error_description: 'The resource server is misconfigured' });
        expect(res.headers['www-authenticate']).toBeUndefined();
        expect(parseChallenge(res.headers['www-authenticate'])).toBeUndefined();
        expect(res.text).not.toContain(forR2);
      }
      expect(api.logger.lines.some((line) => line.includes(forR2))).toBe(false);
      expectAnswer(api, await send(api.url, 'GET', '/orders/1', bearer(forR2)), '200', PRM2, forR2);
    });
  });
});
