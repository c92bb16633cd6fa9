/**
 * An app made by `nest new` with CLI 12 passes `instrument: ObserveInstrument` (`@nestjs/observe`)
 * to `NestFactory.create`: every provider is then a Proxy whose method wrappers are cached per
 * method with the receiver of their first lookup (see test/support/tracing-instrument.ts). Under
 * it, every token new to the guard must still be answered — 200, 403 or 401 with its challenge —
 * never a hang (the client gives up after 15 s and the test fails).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Inject, Scope } from '@nestjs/common';
import { DiscoveryService, REQUEST } from '@nestjs/core';
import { KeycardGuard, RequireScopes } from '../lib/index.js';
import { RouteRulesRegistry } from '../lib/resource-server/route-rules.registry.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome, onScopedRoute } from './support/denials.js';
import { bearer, baseClaims, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, scopeOf, startApp, type RunningApp } from './support/keycard-app.js';
import { tracingInstrument, type TracingInstrument } from './support/tracing-instrument.js';

const REFUSED = onScopedRoute('401 IT', scopeOf('GET', '/orders'));

describe.each(ADAPTERS)('under an APM instrument (instanceDecorator), over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let instrument: TracingInstrument;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    instrument = tracingInstrument();
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { instrument });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const fresh = (overrides: Record<string, unknown> = {}) => zoneSigned(zone, T0_HEADER, baseClaims(zone, overrides));
  const get = (token?: string) => send(api.url, 'GET', '/orders', token === undefined ? [] : bearer(token));

  it('several distinct tokens in a row are each answered with their own outcome and challenge, nothing leaked', async () => {
    const first = fresh({ sub: 'alice' });
    const steps: [string | undefined, Parameters<typeof expectOutcome>[1]][] = [
      [first, '200'],
      [fresh({ scope: 'profile' }), '403:orders:read'],
      [fresh({ aud: 'https://other.example.com' }), REFUSED],
      ['x.y.z', REFUSED],
      [undefined, onScopedRoute('401∅', scopeOf('GET', '/orders'))],
      [fresh({ sub: 'bob' }), '200'],
      [fresh({ exp: Math.floor(Date.now() / 1000) - 3600 }), REFUSED],
      [first, '200'],
    ];
    for (const [token, outcome] of steps) {
      const answer = await get(token);
      expectOutcome(answer, outcome, PRM, token === undefined ? [] : [token], api.logger.lines);
    }
    // The instrument really wrapped the module's providers (else this test would prove nothing).
    expect(instrument.spans).toEqual(expect.arrayContaining(['TokenVerifier.verify']));
    expect(instrument.spans.join(' ')).not.toContain(first);
  });

  it('each 200 is the agent of its own token (no answer crosses to another call)', async () => {
    for (const subject of ['carol', 'dave', 'erin']) {
      const answer = await get(fresh({ sub: subject }));
      expect({ status: answer.status, subject: (answer.json as { agent?: { subject?: string } }).agent?.subject }).toEqual({ status: 200, subject });
    }
  });

  it('the handler Nest registered (the instrument\'s wrapper) has the rules of the method it stands for', () => {
    const orders = api.app.get(DiscoveryService).getControllers().find((wrapper) => wrapper.name === 'OrdersController')!;
    const type = orders.metatype as unknown as { prototype: Record<string, object> };
    const registered = (orders.instance as Record<string, object>).list;
    expect(registered).not.toBe(type.prototype.list);
    const registry = api.app.get(RouteRulesRegistry);
    expect(registry.rulesFor(registered, type)).toBe(registry.rulesFor(type.prototype.list, type));
  });
});

describe('handlers the module did not compile at bootstrap', () => {
  let zone: TestZone;
  let api: RunningApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const orders = () => {
    const wrapper = api.app.get(DiscoveryService).getControllers().find((candidate) => candidate.name === 'OrdersController')!;
    return wrapper.metatype as unknown as { prototype: Record<string, (...args: unknown[]) => unknown> };
  };

  it('a function standing in for a compiled method (named like it, as OpenTelemetry\'s router wrapper is) gets that method\'s rules; other unknown functions get none', () => {
    const type = orders();
    const registry = api.app.get(RouteRulesRegistry);
    const standIn = function list() { return undefined; };
    expect(registry.knownRules(standIn, type)).toBe(registry.knownRules(type.prototype.list, type));
    expect(registry.knownRules(function somethingElse() { return undefined; }, type)).toBeUndefined();
    expect(registry.knownRules(() => undefined, type)).toBeUndefined();
    // A compiled method of one class reached with another class is not renamed into that class's rules.
    const admin = api.app.get(DiscoveryService).getControllers().find((candidate) => candidate.name === 'AdminController')!.metatype as object;
    expect(registry.knownRules(type.prototype.list, admin)).toBeUndefined();
  });

  it('a call to an unknown handler is refused with one log line naming it (Nest answers 403)', async () => {
    const { ExecutionContextHost } = await import('@nestjs/core/helpers/execution-context-host.js');
    const guard = api.app.get(KeycardGuard);
    const context = new ExecutionContextHost([{ headers: {} }, {}], orders() as never, function unknownHandler() { return undefined; });
    context.setType('http');
    const before = api.logger.lines.length;
    await expect(Promise.resolve(guard.canActivate(context))).resolves.toBe(false);
    await expect(Promise.resolve(guard.canActivate(context))).resolves.toBe(false);
    const logged = api.logger.lines.slice(before);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('OrdersController.unknownHandler');
  });
});

/**
 * A controller that binds its handlers in its constructor (`this.list = this.list.bind(this)`, or an
 * autobind helper): Nest registers `instance[method]`, a bound function. For a request-scoped (or
 * durable) controller each request's instance has its own, made after the module started.
 */
@Controller({ path: 'scoped', scope: Scope.REQUEST })
class RequestScopedBoundController {
  constructor(@Inject(REQUEST) readonly request: unknown) {
    this.list = this.list.bind(this);
  }

  @Get()
  @RequireScopes('orders:read')
  list() {
    return { listed: true };
  }
}

describe.each(ADAPTERS)('a request-scoped controller binding its handlers, over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: [RequestScopedBoundController] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('each request\'s bound handler is judged by the method\'s rules: 200 with its scope, 403 IS without, 401∅ naming it; never refused as unknown, nothing leaked', async () => {
    const reader = zoneSigned(zone, T0_HEADER, baseClaims(zone, { scope: 'orders:read' }));
    const profile = zoneSigned(zone, T0_HEADER, baseClaims(zone, { scope: 'profile' }));
    const steps: [string | undefined, Parameters<typeof expectOutcome>[1]][] = [
      [reader, '200'],
      [reader, '200'],
      [profile, '403:orders:read'],
      [undefined, '401∅ scope=orders:read'],
    ];
    for (const [token, outcome] of steps) {
      const answer = await send(api.url, 'GET', '/scoped', token === undefined ? [] : bearer(token));
      expectOutcome(answer, outcome, PRM, token === undefined ? [] : [token], api.logger.lines);
    }
    expect(api.logger.lines.join('\n')).not.toContain('was not a method of the app');
  });
});
