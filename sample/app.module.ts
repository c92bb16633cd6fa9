import { type DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { KeycardModule, type KeycardModuleOptions } from '../lib/index.js';
import { KeycardThrottlerGuard } from '../lib/throttler/index.js';
import { DataController } from './data.controller.js';

export interface SampleConfig {
  zoneUrl: string;
  resource: string;
  /** Requests each agent may make per `rateWindowMs`. */
  rateLimit: number;
  rateWindowMs: number;
  logger?: KeycardModuleOptions['logger'];
}

/**
 * The sample API: every route needs a zone token except /health; each agent gets its own rate
 * limit; every request is written to the audit log with the agent and the user behind it.
 */
@Module({})
export class AppModule {
  static register(config: SampleConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        KeycardModule.forRoot({
          zoneUrl: config.zoneUrl,
          resource: config.resource,
          resourceName: 'nestjs-keycard sample API',
          scopesSupported: ['read', 'write', 'admin'],
          auditLog: true,
          logger: config.logger,
        }),
        ThrottlerModule.forRoot([{ ttl: config.rateWindowMs, limit: config.rateLimit }]),
      ],
      controllers: [DataController],
      providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
    };
  }
}
