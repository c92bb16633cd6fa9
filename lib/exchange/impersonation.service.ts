import { Injectable } from '@nestjs/common';
import type { ExchangedToken } from './exchanged-token.interface.js';
import { TokenExchangeError } from './token-exchange.error.js';
import { checkResource, grantCacheKey, normaliseScope, TOKEN_EXCHANGE_GRANT } from './token-exchange.service.js';
import { TokenRequestClient } from './token-request.client.js';

/** Keycard's subject token type for impersonation: the subject token is a user identifier. */
export const SUBSTITUTE_USER_TOKEN_TYPE = 'urn:keycard:params:oauth:token-type:substitute-user';

/** OAuth errors with which a zone's policy refuses an impersonation (RFC 6749 §5.2). */
const REFUSAL_CODES = new Set(['unauthorized_client', 'access_denied', 'invalid_grant']);

/**
 * What `ImpersonationService.impersonate()` asks the zone for.
 * @publicApi
 */
export interface ImpersonationRequest {
  /**
   * The zone's identifier of the user to act as (their `sub`). Take it **only** from a verified
   * token (e.g. `@Agent('subject')`) or from server configuration, **never** from a request body,
   * query or path: whoever controls this value chooses whose rights the service uses.
   */
  user: string;
  /** The API the token is for (RFC 8707 `resource`). */
  resource: string;
  /** Scopes to ask for: a space-delimited string or a list. @default what the zone grants */
  scope?: string | readonly string[];
  /**
   * The issuer URL of the user's zone, exactly as configured (a user identifier means someone else,
   * or no one, at another zone). Take it from the same verified token as `user` (`agent.issuer`).
   * @default the only zone; with several, the zone that issued the token of the request being
   *   served; outside one, none (a `zone_required` error)
   */
  zone?: string;
}

/**
 * Thrown by `ImpersonationService.impersonate()` when the zone's policy refuses to let this service
 * act as the user (`unauthorized_client`, `access_denied` or `invalid_grant`). A
 * {@link TokenExchangeError}, so the module's exception filter answers it like any exchange failure.
 * @publicApi
 */
export class ImpersonationRefusedError extends TokenExchangeError {
  constructor(cause: TokenExchangeError) {
    super(`the zone refused impersonation (${cause.code})`, cause.kind, cause.code, cause.status, cause.retryAfterSeconds);
    this.name = 'ImpersonationRefusedError';
  }
}

/**
 * Impersonation: an RFC 8693 exchange whose subject token is a user identifier of type
 * `urn:keycard:params:oauth:token-type:substitute-user`, for a service the zone's policy allows to
 * act as its users without their token (a support tool, a scheduled job per user). The issued
 * token has the user as `sub`. Cached, collapsed and retried like every grant of this module
 * (catalogue V3).
 *
 * The user identifier decides whose rights the service gets: take it only from the verified
 * inbound token or from server configuration, never from request data. With several zones the
 * request goes to the user's `zone`, else to the zone that issued the token of the request being
 * served (decision Q22: the same choice as `ClientCredentialsService`), with that zone's credentials.
 *
 * @example
 * ```ts
 * const token = await this.impersonation.impersonate({ user: agent.subject, resource: 'https://crm.internal', scope: 'contacts:read' });
 * ```
 * @throws ImpersonationRefusedError when the zone's policy refuses.
 * @throws TokenExchangeError for every other failure (see its `kind`); before any request, kind
 *   `untrusted_issuer` when `zone` names no trusted zone, kind `zone_required` when several zones are
 *   trusted, `zone` is missing and no request verified at one of them is being served.
 * @throws TypeError when `user` is empty or `resource` is not an absolute URL.
 * @publicApi
 */
@Injectable()
export class ImpersonationService {
  constructor(private readonly client: TokenRequestClient) {}

  async impersonate(request: ImpersonationRequest): Promise<ExchangedToken> {
    if (typeof request?.user !== 'string' || request.user === '') {
      throw new TypeError("ImpersonationService.impersonate: 'user' must be a non-empty string");
    }
    const resource = checkResource('ImpersonationService.impersonate', request.resource);
    // Never the first zone by default: that would act as whoever has this identifier there.
    const zone = this.client.zoneFor(request.zone);
    const scope = normaliseScope(request.scope);
    const form: Record<string, string> = {
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: request.user,
      subject_token_type: SUBSTITUTE_USER_TOKEN_TYPE,
      resource,
    };
    if (scope) form.scope = scope;
    const key = grantCacheKey([SUBSTITUTE_USER_TOKEN_TYPE, zone.issuer, request.user, resource, scope ?? '']);
    try {
      return await this.client.request({ key, form, requestedScope: scope, zone: () => zone });
    } catch (error) {
      if (error instanceof TokenExchangeError && error.kind === 'oauth' && REFUSAL_CODES.has(error.code ?? '')) {
        throw new ImpersonationRefusedError(error);
      }
      throw error;
    }
  }
}
