export { KeycardModule } from './keycard.module.js';
export type { KeycardModuleAsyncOptions, KeycardOptionsFactory } from './keycard.module.js';
export { KeycardGuard } from './resource-server/keycard.guard.js';
export { DecisionCore } from './decision/decision-core.js';
export { DecisionEvents } from './decision/decision-events.js';
export type {
  DecidedCall, DecisionEvent, DecisionListener, DecisionType, ExchangedEvent, KeycardEvent, KeycardEventListener, PerformedBy,
  RevocationAppliedEvent, RevocationMatch, StepUpEvidence,
} from './decision/decision-events.js';
export type { DecisionReason } from './decision/decision-reason.js';
export { KEYCARD_TOKEN_VALIDATORS } from './decision/token-validator.js';
export { DpopKey } from './dpop/dpop-key.js';
export type { DpopAlgorithm, DpopProofRequest } from './dpop/dpop-key.js';
export type { DpopModuleOptions } from './dpop/dpop-options.js';
export { InMemoryDpopReplayStore } from './dpop/dpop-replay-store.js';
export type { DpopReplayStore } from './dpop/dpop-replay-store.js';
export { InvalidDpopProofException, UseDpopNonceException, DpopReplayStoreUnavailableException } from './dpop/dpop.exceptions.js';
export { jwkThumbprint } from './dpop/jwk-thumbprint.js';
export { dpopFetch } from './dpop/dpop-fetch.js';
export type { DpopFetchLike, DpopFetchOptions } from './dpop/dpop-fetch.js';
export type { TokenValidator } from './decision/token-validator.js';
export type { ConnectionOpening } from './decision/connection-opening.js';
export { Call } from './decision/call.js';
export { CarrierLifecycle } from './decision/carrier-lifecycle.js';
export type { CarrierBinding, LiveCarrier, CarrierEndReason } from './decision/carrier-lifecycle.js';
export { RouteRulesRegistry } from './resource-server/route-rules.registry.js';
export type { RouteRules } from './resource-server/route-rules.registry.js';
export { KeycardConnections } from './contexts/keycard-connections.service.js';
export type { GraphQLWsHooks, MercuriusSubscriptionHooks } from './contexts/keycard-connections.service.js';
export type { RpcTokenExtractor } from './contexts/rpc.context.js';
export { Public } from './decorators/public.decorator.js';
export { RequireScopes } from './decorators/require-scopes.decorator.js';
export { OptionalAuth } from './decorators/optional-auth.decorator.js';
export { RequireClaims, RequireActors } from './decorators/require-claims.decorator.js';
export { RequireAuthentication } from './decorators/require-authentication.decorator.js';
export type {
  ArgumentScopes, ClaimPredicate, ClaimRequirement, ClaimValue, AuthenticationRequirement, ActorRequirement,
} from './decision/policy/policy-metadata.js';
export type { ScopeHierarchyOption, ImpliedScope } from './decision/policy/scope-hierarchy.js';
export { Agent } from './decorators/agent.decorator.js';
export { McpEndpoint } from './mcp/mcp-endpoint.decorator.js';
export type { McpEndpointOptions } from './mcp/mcp-endpoint.decorator.js';
export type { McpAuthInfo, McpAuthInfoExtra } from './mcp/mcp-auth-info.js';
export { McpStateHandles } from './mcp/mcp-state-handles.js';
export type { McpStateHandlesOptions } from './mcp/mcp-state-handles.js';
export {
  KeycardException, MissingCredentialsException, InvalidTokenException, InvalidRequestException,
  InsufficientScopeException, ZoneUnavailableException, FreshnessUnknownException, ResourceNotConfiguredException,
  InsufficientPermissionException, InsufficientUserAuthenticationException, PolicyFailedException,
} from './resource-server/keycard.exceptions.js';
export type { DenialReason } from './resource-server/keycard.exceptions.js';
export { KEYCARD_OPTIONS, KEYCARD_OPTIONS_OVERRIDE, KEYCARD_CLOCK } from './keycard.constants.js';
export type { Clock } from './clock.js';
export { ZoneMetadataService } from './zone/zone-metadata.service.js';
export type { ZoneMetadata } from './zone/zone-metadata.service.js';
export type { AgentContext, ActorChain } from './interfaces/agent-context.interface.js';
export type { Principal } from './decision/principal.js';
export { samePrincipal } from './decision/principal.js';
export type { KeycardModuleOptions, KeycardZoneOptions, FetchLike, IntrospectionModuleOptions } from './interfaces/keycard-module-options.interface.js';
export type { ClaimMappingOption } from './resource-server/claim-mapping.js';
export type { KeycardOptions } from './keycard-options.js';
export { keycardPinoHttpOptions, redactRequest, REDACTED } from './logging/pino-http-options.js';
export type { PinoHttpOptionsLike } from './logging/pino-http-options.js';
export { TokenExchangeService } from './exchange/token-exchange.service.js';
export { TokenExchangeError } from './exchange/token-exchange.error.js';
export type { TokenExchangeErrorKind } from './exchange/token-exchange.error.js';
export { TokenExchangeExceptionFilter } from './exchange/token-exchange.filter.js';
export { ClientSecret, PrivateKeyJwt, WorkloadIdentity } from './exchange/client-authentication.js';
export type { ClientAuthentication, ClientAuthenticationParts, WorkloadIdentityOptions } from './exchange/client-authentication.js';
export { tokenFileSource, gcpMetadataSource, flySocketSource, functionSource, WorkloadTokenFileError } from './exchange/workload-token-source.js';
export type { WorkloadTokenSource, GcpMetadataSourceOptions, FlySocketSourceOptions } from './exchange/workload-token-source.js';
export { ClientCredentialsService } from './exchange/client-credentials.service.js';
export type { ClientCredentialsRequest } from './exchange/client-credentials.service.js';
export { ImpersonationService, ImpersonationRefusedError, SUBSTITUTE_USER_TOKEN_TYPE } from './exchange/impersonation.service.js';
export type { ImpersonationRequest } from './exchange/impersonation.service.js';
export { Grant } from './exchange/grant.decorator.js';
export type { GrantOptions, GrantResources, GrantScopes } from './exchange/grant.decorator.js';
export { Access } from './exchange/access.decorator.js';
export { AccessContext, ResourceAccessError } from './exchange/access-context.js';
export type { AccessStatus, ResourceAccessReason } from './exchange/access-context.js';
export type { ExchangedToken, TokenExchangeRequest } from './exchange/exchanged-token.interface.js';
export type { ExchangedTokenStore, StoredExchangedToken } from './exchange/exchanged-token-store.interface.js';
export { KeycardRevocationModule } from './revocation/keycard-revocation.module.js';
export { RevocationService } from './revocation/revocation.service.js';
export type { RevocationStatus, RevocationListener } from './revocation/revocation.service.js';
export type { Revocation, RevocationTarget, RevocationEntry, RevocationKind } from './revocation/revocation.js';
export type { RevocationFeed, RevocationFeedSink, RevocationChange, ClaimOutcome } from './revocation/revocation-feed.js';
export type { KeycardRevocationOptions } from './revocation/revocation-options.js';
export type { SsfReceiverOptions } from './revocation/ssf/ssf-options.js';
export { RequireFreshness } from './decorators/require-freshness.decorator.js';
export { SsfReceiver } from './revocation/ssf/ssf-receiver.js';
export type { SetOutcome } from './revocation/ssf/ssf-receiver.js';
export { SsfError } from './revocation/ssf/ssf-error.js';
export type { SsfErrorCode } from './revocation/ssf/ssf-error.js';
