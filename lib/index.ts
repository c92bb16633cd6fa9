export { KeycardModule } from './keycard.module.js';
export type { KeycardModuleAsyncOptions, KeycardOptionsFactory } from './keycard.module.js';
export { KeycardGuard } from './resource-server/keycard.guard.js';
export { RouteRulesRegistry } from './resource-server/route-rules.registry.js';
export type { RouteRules } from './resource-server/route-rules.registry.js';
export { Public } from './decorators/public.decorator.js';
export { RequireScopes } from './decorators/require-scopes.decorator.js';
export { Agent } from './decorators/agent.decorator.js';
export {
  KeycardException, MissingCredentialsException, InvalidTokenException, InvalidRequestException,
  InsufficientScopeException, ZoneUnavailableException, ResourceNotConfiguredException,
} from './resource-server/keycard.exceptions.js';
export type { DenialReason } from './resource-server/keycard.exceptions.js';
export { KEYCARD_OPTIONS, KEYCARD_CLOCK } from './keycard.constants.js';
export type { Clock } from './clock.js';
export { ZoneMetadataService } from './zone/zone-metadata.service.js';
export type { ZoneMetadata } from './zone/zone-metadata.service.js';
export type { AgentContext, ActorChain } from './interfaces/agent-context.interface.js';
export type { KeycardModuleOptions, KeycardZoneOptions, FetchLike } from './interfaces/keycard-module-options.interface.js';
export type { KeycardOptions } from './keycard-options.js';
export { TokenExchangeService } from './exchange/token-exchange.service.js';
export { TokenExchangeError } from './exchange/token-exchange.error.js';
export type { TokenExchangeErrorKind } from './exchange/token-exchange.error.js';
export { TokenExchangeExceptionFilter } from './exchange/token-exchange.filter.js';
export { ClientSecret, PrivateKeyJwt, WorkloadIdentity } from './exchange/client-authentication.js';
export type { ClientAuthentication, ClientAuthenticationParts, WorkloadIdentityOptions } from './exchange/client-authentication.js';
export { tokenFileSource, gcpMetadataSource, flySocketSource, functionSource } from './exchange/workload-token-source.js';
export type { WorkloadTokenSource, GcpMetadataSourceOptions, FlySocketSourceOptions } from './exchange/workload-token-source.js';
export { ClientCredentialsService } from './exchange/client-credentials.service.js';
export type { ClientCredentialsRequest } from './exchange/client-credentials.service.js';
export { ImpersonationService, ImpersonationRefusedError, SUBSTITUTE_USER_TOKEN_TYPE } from './exchange/impersonation.service.js';
export type { ImpersonationRequest } from './exchange/impersonation.service.js';
export { Grant } from './exchange/grant.decorator.js';
export type { GrantResources, GrantScopes } from './exchange/grant.decorator.js';
export { Access } from './exchange/access.decorator.js';
export { AccessContext, ResourceAccessError } from './exchange/access-context.js';
export type { AccessStatus, ResourceAccessReason } from './exchange/access-context.js';
export type { ExchangedToken, TokenExchangeRequest } from './exchange/exchanged-token.interface.js';
export type { ExchangedTokenStore, StoredExchangedToken } from './exchange/exchanged-token-store.interface.js';
