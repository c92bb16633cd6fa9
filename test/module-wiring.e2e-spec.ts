import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type CanActivate, Controller, Get, Injectable, type INestApplication, Module } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { ExternalContextCreator } from '@nestjs/core/helpers/external-context-creator.js';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { KeycardGuard, KeycardModule, Public, RequireScopes, type AgentContext, type KeycardModuleOptions } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { parseChallenge, send } from './support/http.js';

@Controller()
class PingController {
  @Get('ping')
  ping() {
    return { pong: true };
  }
}

@Controller()
class ScopedPingController {
  @Get('scoped-ping')
  @RequireScopes('read')
  ping() {
    return { pong: true };
  }
}

/** An app's stricter guard: every scoped route also needs `extra`. */
@Injectable()
class StricterGuard extends KeycardGuard {
  protected override hasScopes(agent: AgentContext, required: readonly string[]): boolean {
    return agent.scopes.includes('extra') && super.hasScopes(agent, required);
  }
}

@Injectable()
class ZoneConfig {
  static issuer = '';
  createKeycardOptions(): KeycardModuleOptions {
    return { zoneUrl: ZoneConfig.issuer, resource: R };
  }
}

/** Handlers of a transport the module has no context kind for (its context type is 'telegraf'). */
@Injectable()
class BotUpdates {
  start() {
    return 'started';
  }

  @Public()
  help() {
    return 'help text';
  }
}

describe('module wiring', () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    ZoneConfig.issuer = zone.issuer;
  });
  afterAll(() => zone.stop());

  async function serve(module: unknown, override?: CanActivate) {
    const builder = Test.createTestingModule({ imports: [module as never], controllers: [PingController] });
    if (override) builder.overrideProvider(KeycardGuard).useValue(override);
    return listening((await builder.compile()).createNestApplication({ logger: false }));
  }

  /** The app listening on a free loopback port, with its base URL. */
  async function listening(app: INestApplication) {
    await app.listen(0, '127.0.0.1');
    return { app, url: `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}` };
  }

  it.each([
    ['useFactory', KeycardModule.forRootAsync({ useFactory: () => ({ zoneUrl: ZoneConfig.issuer, resource: R }) })],
    ['useClass', KeycardModule.forRootAsync({ useClass: ZoneConfig })],
  ])('forRootAsync(%s) protects routes with a valid token', async (_name, module) => {
    const { app, url } = await serve(module);
    try {
      expect((await send(url, 'GET', '/ping')).status).toBe(401);
      const ok = await send(url, 'GET', '/ping', [['Authorization', `Bearer ${zone.issueToken()}`]]);
      expect(ok.status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('forRootAsync with invalid options fails the bootstrap, naming the option', async () => {
    const module = KeycardModule.forRootAsync({ useFactory: () => ({ zoneUrl: 'http://zone.example.com', resource: R }) });
    await expect(Test.createTestingModule({ imports: [module] }).compile()).rejects.toThrow("'zoneUrl' must use https");
  });

  it('forRoot with invalid options throws at the call site', () => {
    expect(() => KeycardModule.forRoot({ zoneUrl: zone.issuer, algorithms: ['HS256' as never] })).toThrow("'algorithms'");
  });

  it('the global guard is bound with useExisting, so overriding KeycardGuard replaces it', async () => {
    const { app, url } = await serve(KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R }), { canActivate: () => true });
    try {
      expect((await send(url, 'GET', '/ping')).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('M4 a KeycardGuard subclass bound with APP_GUARD in the app module boots (the providers of its constructor are exported) and its stricter hook judges', async () => {
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger: { log() {}, warn() {}, error() {} } })],
      controllers: [ScopedPingController],
      providers: [{ provide: APP_GUARD, useClass: StricterGuard }],
    })
    class AppModule {}
    const { app, url } = await listening(await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false, abortOnError: false }));
    try {
      const token = zone.issueToken({ scope: 'read' });
      const refused = await send(url, 'GET', '/scoped-ping', [['Authorization', `Bearer ${token}`]]);
      expect(refused.status).toBe(403);
      expect(parseChallenge(refused.headers['www-authenticate'])).toMatchObject({ scheme: 'Bearer', params: { error: 'insufficient_scope' } });
      expect(refused.text.includes(token)).toBe(false);
      const ok = await send(url, 'GET', '/scoped-ping', [['Authorization', `Bearer ${zone.issueToken({ scope: 'read extra' })}`]]);
      expect(ok.status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('M4 a KeycardGuard subclass whose hasScopes answers anything but true (an async hook: a Promise of false) refuses: 403 insufficient_scope naming the scope, nothing leaked', async () => {
    /** A hook looking its answer up somewhere, written async (JavaScript, or a cast past the type). */
    @Injectable()
    class AsyncHookGuard extends KeycardGuard {
      protected override hasScopes(): boolean {
        return Promise.resolve(false) as unknown as boolean;
      }
    }
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger: { log() {}, warn() {}, error() {} } })],
      controllers: [ScopedPingController],
      providers: [{ provide: APP_GUARD, useClass: AsyncHookGuard }],
    })
    class AppModule {}
    const { app, url } = await listening(await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false, abortOnError: false }));
    try {
      const token = zone.issueToken({ scope: 'read' });
      const refused = await send(url, 'GET', '/scoped-ping', [['Authorization', `Bearer ${token}`]]);
      expect(refused.status).toBe(403);
      expect(parseChallenge(refused.headers['www-authenticate'])).toMatchObject({ scheme: 'Bearer', params: { error: 'insufficient_scope', scope: 'read' } });
      expect(refused.text.includes(token)).toBe(false);
    } finally {
      await app.close();
    }
  });

  it('M4 a KeycardGuard subclass bound in a module imported after KeycardModule (its guard runs second) still judges with its own hook', async () => {
    @Module({ providers: [{ provide: APP_GUARD, useClass: StricterGuard }] })
    class GuardModule {}
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger: { log() {}, warn() {}, error() {} } }), GuardModule],
      controllers: [ScopedPingController],
    })
    class AppModule {}
    const { app, url } = await listening(await NestFactory.create(AppModule, new ExpressAdapter(), { logger: false, abortOnError: false }));
    try {
      const token = zone.issueToken({ scope: 'read' });
      const refused = await send(url, 'GET', '/scoped-ping', [['Authorization', `Bearer ${token}`]]);
      expect(refused.status).toBe(403);
      expect(parseChallenge(refused.headers['www-authenticate'])).toMatchObject({ scheme: 'Bearer', params: { error: 'insufficient_scope', scope: 'read' } });
      expect(refused.text.includes(token)).toBe(false);
      expect((await send(url, 'GET', '/scoped-ping', [['Authorization', `Bearer ${zone.issueToken({ scope: 'read extra' })}`]])).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('N8 a context the module cannot judge (a third-party transport, via ExternalContextCreator) → refused with one log line naming it; @Public() served', async () => {
    const lines: string[] = [];
    const logger = { log() {}, warn: (line: string) => lines.push(line), error: (line: string) => lines.push(line) };
    const moduleRef = await Test.createTestingModule({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger })],
      providers: [BotUpdates],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      const creator = app.get(ExternalContextCreator);
      const updates = app.get(BotUpdates);
      // How transports such as nestjs-telegraf run their handlers through Nest's enhancers.
      const proxy = (method: 'start' | 'help') =>
        creator.create(updates, updates[method], method, undefined, undefined, undefined, undefined, undefined, 'telegraf') as (
          ...args: unknown[]
        ) => Promise<unknown>;
      await expect(proxy('start')({ message: 'hi' })).rejects.toMatchObject({ status: 403 });
      await expect(proxy('start')({ message: 'again' })).rejects.toMatchObject({ status: 403 });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^Keycard refused a 'telegraf' call \(BotUpdates\.start\): .*Mark the handler @Public\(\)/);
      await expect(proxy('help')({ message: 'help' })).resolves.toBe('help text');
    } finally {
      await app.close();
    }
  });

  it('execution contexts the module cannot judge fail closed, with one log line per context type', async () => {
    const lines: string[] = [];
    const logger = { log() {}, warn: (line: string) => lines.push(line), error() {} };
    const moduleRef = await Test.createTestingModule({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger })],
    }).compile();
    const guard = moduleRef.get(KeycardGuard);
    for (const type of ['telegraf', 'kafka-custom', 'telegraf']) {
      const context = { getType: () => type, getHandler: () => function handle() {}, getClass: () => Object } as never;
      expect(await guard.canActivate(context)).toBe(false);
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/'telegraf' call .*@Public\(\)/);
    await moduleRef.close();
  });
});

