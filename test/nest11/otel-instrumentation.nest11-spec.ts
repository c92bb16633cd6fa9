/**
 * OpenTelemetry's `@opentelemetry/instrumentation-nestjs-core` (part of the usual
 * `auto-instrumentations-node` set; it patches NestJS `>=4 <12`) wraps every HTTP handler as Nest's
 * router registers it: `RouterExecutionContext.create` gets a tracing wrapper in place of the
 * controller's method, named like it and carrying a copy of its metadata. Guards then see the
 * wrapper as `context.getHandler()`, a function the module never saw at bootstrap. Each route must
 * still be judged by the rules of the method it stands for: never refused as an unknown handler, never
 * opened either.
 *
 * The wrapping is done here as the instrumentation does it (see test/support/otel-router-wrapper.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { TestZone } from '../../lib/testing/index.js';
import { expectOutcome, onScopedRoute } from '../support/denials.js';
import { bearer, baseClaims, PRM, R, T0_HEADER, zoneSigned } from '../support/forge.js';
import { send } from '../support/http.js';
import { ADAPTERS, scopeOf, startApp, type RunningApp } from '../support/keycard-app.js';
import { wrapRouterHandlersLikeOpenTelemetry } from '../support/otel-router-wrapper.js';

describe.each(ADAPTERS)('under OpenTelemetry\'s NestJS instrumentation, over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let wrapping: ReturnType<typeof wrapRouterHandlersLikeOpenTelemetry>;

  beforeAll(async () => {
    wrapping = wrapRouterHandlersLikeOpenTelemetry();
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
    wrapping?.restore();
  });

  const fresh = (overrides: Record<string, unknown> = {}) => zoneSigned(zone, T0_HEADER, baseClaims(zone, overrides));

  it('M2 each wrapped route is judged by its own method\'s rules: 200 with its scope, 403 IS without, 401∅ with its scope hint, @Public() served; no "unknown handler" refusal, nothing leaked', async () => {
    const reader = fresh({ scope: 'orders:read' });
    const profile = fresh({ scope: 'profile' });
    const admin = fresh({ scope: 'admin' });
    const steps: [method: string, path: string, token: string | undefined, outcome: Parameters<typeof expectOutcome>[1]][] = [
      ['GET', '/orders', reader, '200'],
      ['GET', '/orders', profile, '403:orders:read'],
      ['GET', '/orders', undefined, onScopedRoute('401∅', scopeOf('GET', '/orders'))],
      ['POST', '/orders', reader, '403:orders:read orders:write'],
      ['GET', '/admin', admin, '200'],
      ['GET', '/admin/reports', admin, '403:reports:read'],
      ['GET', '/health', undefined, '200'],
    ];
    for (const [method, path, token, outcome] of steps) {
      const json: [string, string][] = method === 'POST' ? [['Content-Type', 'application/json']] : [];
      const answer = await send(api.url, method, path, [...(token === undefined ? [] : bearer(token)), ...json], method === 'POST' ? '{}' : undefined);
      expectOutcome(answer, outcome, PRM, token === undefined ? [] : [token], api.logger.lines);
    }
    expect(api.logger.lines.join('\n')).not.toContain('was not a method of the app');
    // The wrappers really served the calls (else this test would prove nothing).
    expect(wrapping.traced).toEqual(expect.arrayContaining(['list', 'index', 'health']));
  });
});
