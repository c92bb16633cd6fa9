import { type DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { KeycardModule, KeycardRevocationModule, type KeycardModuleOptions, type SsfReceiverOptions } from '../lib/index.js';
import { KeycardThrottlerGuard } from '../lib/throttler/index.js';
import { DataController } from './data.controller.js';
import { DigestJob, UPSTREAM_NOTES } from './digest.job.js';
import { SampleMcpController, SampleTools } from './mcp.js';
import { summaryController, type UpstreamApi } from './summary.controller.js';

export interface SampleConfig {
  zoneUrl: string;
  resource: string;
  /** Requests each agent may make per `rateWindowMs`. */
  rateLimit: number;
  rateWindowMs: number;
  logger?: KeycardModuleOptions['logger'];
  /** This API's own credentials at the zone: for the grant (on the user's behalf) and the job (as itself). */
  clientCredentials?: KeycardModuleOptions['clientCredentials'];
  /** The upstream notes API; with it, `GET /api/summary` and the digest job are mounted. */
  notes?: UpstreamApi;
  /** The zone's Shared Signals, pushed to `POST /ssf/events`: revocations apply before `exp` (docs/revocation.md). */
  ssf?: SsfReceiverOptions;
}

/**
 * The sample API: every route needs a zone token except /health; each agent gets its own rate
 * limit; every request is written to the audit log with the agent and the user behind it. With an
 * upstream notes API, `GET /api/summary` calls it for the user (a grant) and `DigestJob` calls it as
 * the service itself.
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
          clientCredentials: config.clientCredentials,
        }),
        ThrottlerModule.forRoot([{ ttl: config.rateWindowMs, limit: config.rateLimit }]),
        ...(config.ssf ? [KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: 3600, ssf: config.ssf })] : []),
      ],
      controllers: [DataController, SampleTools, SampleMcpController, ...(config.notes ? [summaryController(config.notes)] : [])],
      providers: [
        { provide: APP_GUARD, useClass: KeycardThrottlerGuard },
        ...(config.notes ? [DigestJob, { provide: UPSTREAM_NOTES, useValue: config.notes }] : []),
      ],
    };
  }
}
