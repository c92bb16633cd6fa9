import { Module } from '@nestjs/common';
import { KeycardModule } from 'nestjs-keycard';
import { AppController } from './app.controller.js';
import { AppService } from './app.service.js';

@Module({
  imports: [
    // Options from the environment, read when the app boots (tests override them: see test/).
    KeycardModule.forRootAsync({
      useFactory: () => ({
        zoneUrl: process.env.KEYCARD_ZONE_URL ?? '',
        resource: process.env.KEYCARD_RESOURCE,
      }),
    }),
  ],
  controllers: [AppController],
  providers: [AppService],
})
export class AppModule {}
