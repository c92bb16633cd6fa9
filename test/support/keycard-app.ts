import { Controller, Get, HttpCode, Module, Post, type INestApplication, type ModuleMetadata } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Agent, KEYCARD_CLOCK, KeycardModule, Public, RequireScopes, type AgentContext, type Clock, type KeycardModuleOptions } from '../../lib/index.js';

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

/** Log lines the module wrote, to assert that no token or secret leaked (INV7). */
export class CapturingLogger {
  readonly lines: string[] = [];
  log(message: unknown) {
    this.lines.push(String(message));
  }
  warn(message: unknown) {
    this.lines.push(String(message));
  }
  error(message: unknown) {
    this.lines.push(String(message));
  }
  debug(message: unknown) {
    this.lines.push(String(message));
  }
}

export interface RunningApp {
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
  /** The module's clock: set `offsetMs` to move time for every rule of the module. */
  clock: { offsetMs: number };
  close(): Promise<void>;
}

/** A real Nest app on loopback with the Keycard module, over the chosen adapter. */
export async function startApp(
  adapter: AdapterName,
  options: Omit<KeycardModuleOptions, 'logger'>,
  extra: Pick<ModuleMetadata, 'imports' | 'providers'> & {
    /** Shapes the app before it listens: `setGlobalPrefix()`, `enableVersioning()`, … */
    configure?: (app: INestApplication) => void;
  } = {},
): Promise<RunningApp> {
  const logger = new CapturingLogger();
  @Module({
    imports: [KeycardModule.forRoot({ ...options, logger }), ...(extra.imports ?? [])],
    providers: extra.providers ?? [],
    controllers: [OrdersController, AdminController],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(), {
    logger: false,
    abortOnError: false,
  });
  extra.configure?.(app);
  // Time the tests can move: the module reads only this clock.
  const clock = { offsetMs: 0 };
  app.get<Clock>(KEYCARD_CLOCK).now = () => Date.now() + clock.offsetMs;
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    logger,
    clock,
    close: () => app.close(),
  };
}
