import { type DynamicModule, Module } from '@nestjs/common';
import { KeycardModule } from '../lib/index.js';
import { DataController } from './data.controller.js';

export interface SampleConfig {
  zoneUrl: string;
  resource: string;
}

/** The sample API: every route needs a token from the zone, except /health. */
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
        }),
      ],
      controllers: [DataController],
    };
  }
}
