import type { Provider } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { GrpcStreamCallRefusedFilter } from './contexts/grpc-stream-refused.filter.js';
import { HttpRequestShape } from './contexts/http-request-shape.js';
import { ExchangeFailureLog } from './exchange/exchange-failure-log.js';
import { TokenExchangeExceptionFilter } from './exchange/token-exchange.filter.js';
import { ClientCredentialsService } from './exchange/client-credentials.service.js';
import { ImpersonationService } from './exchange/impersonation.service.js';
import { TokenExchangeService } from './exchange/token-exchange.service.js';
import { TokenRequestClient } from './exchange/token-request.client.js';
import { ServingZoneInterceptor } from './exchange/serving-zone.js';
import { AuditTrail } from './resource-server/audit-trail.js';
import { SystemClock } from './clock.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS, KEYCARD_OPTIONS_OVERRIDE, KEYCARD_RAW_OPTIONS } from './keycard.constants.js';
import { KeycardGuard } from './resource-server/keycard.guard.js';
import { McpTools } from './mcp/mcp-tools.js';
import { type KeycardOptions, normaliseOptions } from './keycard-options.js';
import type { KeycardModuleOptions } from './interfaces/keycard-module-options.interface.js';
import { KeycardStrategy } from './resource-server/keycard.strategy.js';
import { ResourceResolver } from './resource-server/resource-resolver.js';
import { RouteRulesRegistry } from './resource-server/route-rules.registry.js';
import { VerifiedTokenCache } from './resource-server/verified-token-cache.js';
import { TrustedZones } from './zone/trusted-zones.js';
import { TokenVerifier } from './resource-server/token-verifier.js';
import { KeycardContexts } from './contexts/keycard-contexts.js';
import { CarrierLifecycle } from './decision/carrier-lifecycle.js';
import { DecisionCore } from './decision/decision-core.js';
import { DecisionEvents } from './decision/decision-events.js';
import { TokenValidators } from './decision/token-validator.js';
import { KeycardConnections } from './contexts/keycard-connections.service.js';
import { KeycardStreams } from './contexts/keycard-streams.js';
import { GatewayGuards } from './contexts/gateway-guards.js';
import { ZoneMetadataService } from './zone/zone-metadata.service.js';
import { ZoneBootCheck } from './zone/zone-boot-check.js';
import { IntrospectionClient } from './introspection/introspection.client.js';
import { TokenIntrospection } from './introspection/token-introspection.js';

/** Everything the module provides once its raw options are available under KEYCARD_RAW_OPTIONS. */
export function createKeycardProviders(): Provider[] {
  return [
    { provide: KEYCARD_OPTIONS_OVERRIDE, useValue: null },
    {
      provide: KEYCARD_OPTIONS,
      useFactory: (raw: string | KeycardModuleOptions, override: Partial<KeycardModuleOptions> | null) =>
        normaliseOptions(override ? { ...(typeof raw === 'string' ? { zoneUrl: raw } : raw), ...override } : raw),
      inject: [KEYCARD_RAW_OPTIONS, KEYCARD_OPTIONS_OVERRIDE],
    },
    { provide: KEYCARD_CLOCK, useFactory: () => new SystemClock() },
    TrustedZones,
    // The first zone's metadata, for apps that inject it (Nest runs its lifecycle hooks a second
    // time through this provider: both are idempotent).
    { provide: ZoneMetadataService, useFactory: (zones: TrustedZones) => zones.all[0].metadata, inject: [TrustedZones] },
    KeycardStrategy,
    ResourceResolver,
    RouteRulesRegistry,
    DecisionEvents,
    ZoneBootCheck,
    AuditTrail,
    VerifiedTokenCache,
    TokenVerifier,
    KeycardContexts,
    CarrierLifecycle,
    KeycardConnections,
    // Streamed calls (gRPC streams, @Sse() routes) end at expiry: put on their handlers while the app is created.
    KeycardStreams,
    McpTools,
    TokenValidators,
    // RFC 7662: wired at bootstrap only where routes demand freshness or opaque tokens are on.
    IntrospectionClient,
    TokenIntrospection,
    DecisionCore,
    KeycardGuard,
    // Over Express, requests get their `user` field as Node makes them: the guard's write then costs no new shape per request.
    HttpRequestShape,
    // Every mcp-nest tool controller gets the guard (N12, N14) and the exchange filter (Q8), with or without inheritAppConfig:
    // one of each per class for every app of the process, judging and answering each call with this app's when it serves it.
    {
      provide: 'KEYCARD:MCP_TOOL_GUARD',
      useFactory: (tools: McpTools, guard: KeycardGuard, filter: TokenExchangeExceptionFilter) => tools.guardTools(guard, filter),
      inject: [McpTools, KeycardGuard, TokenExchangeExceptionFilter],
    },
    // useExisting keeps one guard instance and lets apps and tests override KeycardGuard.
    { provide: APP_GUARD, useExisting: KeycardGuard },
    // ...and the same guard on every WebSocket gateway, where NestJS 11 runs no APP_GUARD (N6), with
    // the exchange filter, as no Nest major runs an APP_FILTER there (Q8).
    GatewayGuards,
    TokenRequestClient,
    TokenExchangeService,
    ClientCredentialsService,
    ImpersonationService,
    // The zone of the call being served, for grants that name none (Q22). Only with several zones:
    // Nest skips a global interceptor whose factory returns null, so one-zone apps pay nothing per call.
    {
      provide: APP_INTERCEPTOR,
      useFactory: (options: KeycardOptions) => (options.zones.length > 1 ? new ServingZoneInterceptor() : null),
      inject: [KEYCARD_OPTIONS],
    },
    ExchangeFailureLog,
    TokenExchangeExceptionFilter,
    { provide: APP_FILTER, useExisting: TokenExchangeExceptionFilter },
    // A refused @GrpcStreamCall is ended on its call; this settles Nest's handler instead of an unhandled rejection.
    { provide: APP_FILTER, useClass: GrpcStreamCallRefusedFilter },
  ];
}
