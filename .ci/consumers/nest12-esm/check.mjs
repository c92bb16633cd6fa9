// Runs inside a scratch app that installed the packed tarball: proves the package works as users
// get it (exports, ESM, DI metadata, a real guard answering 401 and 200).
import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { KeycardModule, RequireScopes } from 'nestjs-keycard';
import { TestZone } from 'nestjs-keycard/testing';
import { authenticate } from 'nestjs-keycard/pkce';
import { FailSafeThrottlerStorage, KeycardThrottlerGuard } from 'nestjs-keycard/throttler';
// ioredis is an optional peer this consumer does not install: the subpath must still load.
import { RedisExchangedTokenStore } from 'nestjs-keycard/redis';
import { withKeycardSecurity } from 'nestjs-keycard/swagger';
import { KeycardHealthIndicator } from 'nestjs-keycard/health';
// @opentelemetry/api is an optional peer this consumer does not install: the subpath must still load.
import { KeycardTelemetryModule } from 'nestjs-keycard/telemetry';

const exported = [authenticate, KeycardThrottlerGuard, FailSafeThrottlerStorage, RedisExchangedTokenStore, withKeycardSecurity, KeycardHealthIndicator, KeycardTelemetryModule];
if (exported.some((f) => typeof f !== 'function')) {
  console.error('consumer: a subpath export is missing');
  process.exit(1);
}

const resource = 'https://api.example.com';
const zone = await TestZone.start({ audience: resource });

class DataController {
  data() {
    return { ok: true };
  }
}
const method = Object.getOwnPropertyDescriptor(DataController.prototype, 'data');
Get('data')(DataController.prototype, 'data', method);
RequireScopes('read')(DataController.prototype, 'data', method);
Controller()(DataController);

class AppModule {}
Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource })], controllers: [DataController] })(AppModule);

const app = await NestFactory.create(AppModule, { logger: ['error'] });
await app.listen(0, '127.0.0.1');
const url = `http://127.0.0.1:${app.getHttpServer().address().port}/data`;
const anonymous = await fetch(url);
const authorised = await fetch(url, { headers: { authorization: `Bearer ${zone.issueToken({ scope: 'read' })}` } });
await app.close();
await zone.stop();
console.log(`consumer: anonymous → ${anonymous.status} (${anonymous.headers.get('www-authenticate')}), with token → ${authorised.status}`);
if (anonymous.status !== 401 || authorised.status !== 200) process.exit(1);
