import { type DynamicModule, Global, Module } from '@nestjs/common';
import { KEYCARD_REVOCATION_OPTIONS, type KeycardRevocationOptions, normaliseRevocationOptions } from './revocation-options.js';
import { RevocationService } from './revocation.service.js';
import { SsfPoller } from './ssf/ssf-poller.js';
import { SsfPushEndpoint } from './ssf/ssf-push-endpoint.js';
import { SsfReceiver } from './ssf/ssf-receiver.js';

/**
 * Revocation before `exp` (catalogue §X): a revocation list every call is judged against
 * (cache hits and connection messages included), the {@link RevocationService} an app's admin code
 * calls, and optionally a Shared Signals receiver and a feed that shares revocations between
 * instances. Import it beside `KeycardModule.forRoot()`, once, in the root module.
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [
 *     KeycardModule.forRoot({ zoneUrl, resource }),
 *     KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: 3600, feed: new RedisRevocationFeed({ redis }) }),
 *   ],
 * })
 * export class AppModule {}
 * ```
 * @publicApi
 */
@Global()
@Module({})
export class KeycardRevocationModule {
  /** @throws TypeError naming the option, when the options are invalid. */
  static forRoot(options: KeycardRevocationOptions): DynamicModule {
    return {
      module: KeycardRevocationModule,
      global: true,
      providers: [{ provide: KEYCARD_REVOCATION_OPTIONS, useValue: normaliseRevocationOptions(options) }, RevocationService, SsfReceiver, SsfPushEndpoint, SsfPoller],
      exports: [RevocationService, SsfReceiver],
    };
  }
}
