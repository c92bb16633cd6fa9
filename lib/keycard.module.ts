import { type DynamicModule, Global, Module, type ModuleMetadata, type Provider, type Type } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { DiscoveryController } from './resource-server/discovery.controller.js';
import { ClientCredentialsService } from './exchange/client-credentials.service.js';
import { ImpersonationService } from './exchange/impersonation.service.js';
import { TokenExchangeService } from './exchange/token-exchange.service.js';
import type { KeycardModuleOptions } from './interfaces/keycard-module-options.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS, KEYCARD_RAW_OPTIONS } from './keycard.constants.js';
import { AuditTrail } from './resource-server/audit-trail.js';
import { KeycardGuard } from './resource-server/keycard.guard.js';
import { RouteRulesRegistry } from './resource-server/route-rules.registry.js';
import { TokenVerifier } from './resource-server/token-verifier.js';
import { McpTools } from './mcp/mcp-tools.js';
import { KeycardContexts } from './contexts/keycard-contexts.js';
import { KeycardConnections } from './contexts/keycard-connections.service.js';
import { CarrierLifecycle } from './decision/carrier-lifecycle.js';
import { DecisionCore } from './decision/decision-core.js';
import { DecisionEvents } from './decision/decision-events.js';
import { TokenValidators } from './decision/token-validator.js';
import { normaliseOptions } from './keycard-options.js';
import { createKeycardProviders } from './keycard.providers.js';
import { ZoneMetadataService } from './zone/zone-metadata.service.js';
import { TrustedZones } from './zone/trusted-zones.js';

/** A class that builds the options, for `forRootAsync({ useClass })`. */
export interface KeycardOptionsFactory {
  createKeycardOptions(): KeycardModuleOptions | string | Promise<KeycardModuleOptions | string>;
}

/** Options of `KeycardModule.forRootAsync()`. */
export interface KeycardModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  useFactory?: (...args: any[]) => KeycardModuleOptions | string | Promise<KeycardModuleOptions | string>;
  inject?: NonNullable<Extract<Provider, { inject?: unknown }>['inject']>;
  useClass?: Type<KeycardOptionsFactory>;
  useExisting?: Type<KeycardOptionsFactory>;
}

/**
 * Protects every route of the app with a Keycard zone's access tokens and serves the discovery
 * documents. Global: import it once, in the root module.
 *
 * @example
 * ```ts
 * @Module({ imports: [KeycardModule.forRoot({ zoneUrl: 'https://abc.keycard.cloud', resource: 'https://api.example.com' })] })
 * export class AppModule {}
 * ```
 * @publicApi
 */
@Global()
@Module({})
export class KeycardModule {
  /**
   * @param options the zone URL, or the full options.
   * @throws TypeError naming the option, when the options are invalid (fails the bootstrap).
   */
  static forRoot(options: string | KeycardModuleOptions): DynamicModule {
    normaliseOptions(options); // fail at the call site, with the option's name, before Nest boots
    return KeycardModule.build([{ provide: KEYCARD_RAW_OPTIONS, useValue: options }], []);
  }

  /** Like {@link forRoot}, with options from a factory, a class or an existing provider. */
  static forRootAsync(options: KeycardModuleAsyncOptions): DynamicModule {
    const providers: Provider[] = [];
    if (options.useFactory) {
      providers.push({ provide: KEYCARD_RAW_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] });
    } else if (options.useClass || options.useExisting) {
      const factoryType = (options.useClass ?? options.useExisting)!;
      if (options.useClass) providers.push({ provide: factoryType, useClass: factoryType });
      providers.push({
        provide: KEYCARD_RAW_OPTIONS,
        useFactory: (factory: KeycardOptionsFactory) => factory.createKeycardOptions(),
        inject: [factoryType],
      });
    } else {
      throw new TypeError("KeycardModule.forRootAsync: one of 'useFactory', 'useClass' or 'useExisting' is required");
    }
    return KeycardModule.build(providers, options.imports ?? []);
  }

  private static build(optionProviders: Provider[], imports: NonNullable<ModuleMetadata['imports']>): DynamicModule {
    return {
      module: KeycardModule,
      global: true,
      imports: [DiscoveryModule, ...imports],
      // Not a Nest controller: it mounts its routes itself, out of reach of prefixes and versioning.
      providers: [...optionProviders, ...createKeycardProviders(), DiscoveryController],
      exports: [
        KEYCARD_OPTIONS, KEYCARD_CLOCK, KeycardGuard, KeycardContexts, CarrierLifecycle, KeycardConnections, ZoneMetadataService, TrustedZones,
        TokenExchangeService,
        ClientCredentialsService, ImpersonationService,
        // What KeycardGuard's constructor takes (an app's subclass bound with APP_GUARD), and the events apps subscribe to.
        DecisionCore, DecisionEvents,
        TokenVerifier, AuditTrail, RouteRulesRegistry, McpTools,
        // The health indicator reports the DPoP replay store's state; the revocation module adds its validator.
        TokenValidators,
      ],
    };
  }
}
