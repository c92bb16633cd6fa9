import { Controller, Get, HttpCode, Module, Post, type INestApplication, type ModuleMetadata, type NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Agent, KEYCARD_CLOCK, KeycardModule, Public, RequireScopes, type AgentContext, type Clock, type KeycardModuleOptions } from '../../lib/index.js';
import { tracingInstrument } from './tracing-instrument.js';

export type AdapterName = 'express' | 'fastify';
export const ADAPTERS: AdapterName[] = ['express', 'fastify'];

@Controller()
class OrdersController {
  @Get('orders')
  @RequireScopes('orders:read')
  list(@Agent() agent: AgentContext) {
    return { agent };
  }

  @Post('orders')
  @HttpCode(200)
  @RequireScopes('orders:read', 'orders:write')
  create(@Agent('clientId') clientId: string) {
    return { created: true, by: clientId };
  }

  @Get('me')
  me(@Agent() agent: AgentContext, @Agent('subject') subject: string) {
    return { agent, subject };
  }

  @Public()
  @Get('health')
  health() {
    return { ok: true };
  }
}

@RequireScopes('admin')
@Controller('admin')
class AdminController {
  @Get()
  index() {
    return { admin: true };
  }

  @Get('reports')
  @RequireScopes('reports:read')
  reports() {
    return { reports: [] };
  }
}

/** Scopes the routes above require (`METHOD /path`), for the `scope` of their 401s (catalogue Q12). */
const ROUTE_SCOPES: Record<string, string> = {
  'GET /orders': 'orders:read',
  'HEAD /orders': 'orders:read',
  'POST /orders': 'orders:read orders:write',
  'GET /admin': 'admin',
  'GET /admin/reports': 'reports:read',
};

/** The scopes the test app's route requires, or undefined (query string ignored). */
export function scopeOf(method: string, path: string): string | undefined {
  return ROUTE_SCOPES[`${method} ${path.split('?')[0]}`];
}

/** Log lines the module wrote, to assert that no token or secret leaked (INV7). */
export class CapturingLogger {
  readonly lines: string[] = [];
  /** The lines written at each level (`error`, `warn`, `log`, `debug`). */
  readonly levels: Record<'log' | 'warn' | 'error' | 'debug', string[]> = { log: [], warn: [], error: [], debug: [] };
  log(message: unknown) {
    this.capture('log', message);
  }
  warn(message: unknown) {
    this.capture('warn', message);
  }
  error(message: unknown) {
    this.capture('error', message);
  }
  debug(message: unknown) {
    this.capture('debug', message);
  }
  private capture(level: keyof CapturingLogger['levels'], message: unknown) {
    this.lines.push(String(message));
    this.levels[level].push(String(message));
  }
}

export interface RunningApp {
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
  /** The module's clock: set `offsetMs` to move time for every rule of the module, `frozenAtMs` to stop it. */
  clock: { offsetMs: number; frozenAtMs?: number };
  close(): Promise<void>;
}

/** What a test may change in the app beyond the module options. */
export interface AppShape extends Pick<ModuleMetadata, 'imports' | 'providers'> {
  /** Controllers instead of the default orders/admin ones. */
  controllers?: NonNullable<ModuleMetadata['controllers']>;
  /** Shapes the app before it listens: `enableCors()`, `setGlobalPrefix()`, `enableVersioning()`, … */
  configure?: (app: INestApplication) => void;
  /** `NestFactory.create`'s `instrument` (an APM agent's instance decorator). */
  instrument?: NestApplicationOptions['instrument'];
}

/**
 * A real Nest app on loopback with the Keycard module, over the chosen adapter.
 * @throws what the bootstrap throws (the app is closed first).
 */
export async function startApp(
  adapter: AdapterName,
  options: Omit<KeycardModuleOptions, 'logger'>,
  extra: AppShape = {},
): Promise<RunningApp> {
  const logger = new CapturingLogger();
  @Module({
    imports: [KeycardModule.forRoot({ ...options, logger }), ...(extra.imports ?? [])],
    providers: extra.providers ?? [],
    controllers: extra.controllers ?? [OrdersController, AdminController],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(), {
    logger: false,
    abortOnError: false,
    // KEYCARD_TEST_INSTRUMENT=1 runs any suite built on startApp under an APM-style instrument.
    instrument: extra.instrument ?? (process.env.KEYCARD_TEST_INSTRUMENT === '1' ? tracingInstrument() : undefined),
  });
  extra.configure?.(app);
  // Time the tests can move: the module reads only this clock.
  const clock: { offsetMs: number; frozenAtMs?: number } = { offsetMs: 0 };
  app.get<Clock>(KEYCARD_CLOCK).now = () => clock.frozenAtMs ?? Date.now() + clock.offsetMs;
  try {
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  const address = app.getHttpServer().address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    logger,
    clock,
    close: () => app.close(),
  };
}
