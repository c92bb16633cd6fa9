import { type DynamicModule, Module } from '@nestjs/common';
import { KeycardModule, type KeycardModuleOptions } from '../lib/index.js';
import { NotesController } from './notes.controller.js';

/** The upstream API the sample API calls on the user's behalf (and a job calls as itself). */
@Module({})
export class NotesModule {
  static register(config: { zoneUrl: string; resource: string; logger?: KeycardModuleOptions['logger'] }): DynamicModule {
    return {
      module: NotesModule,
      imports: [KeycardModule.forRoot({ zoneUrl: config.zoneUrl, resource: config.resource, resourceName: 'nestjs-keycard sample notes API', logger: config.logger })],
      controllers: [NotesController],
    };
  }
}
