import type { DpopKey } from '../dpop/dpop-key.js';
import { dpopBinding } from './dpop-binding.js';
import { Injectable } from '@nestjs/common';
import type { ExchangedToken } from './exchanged-token.interface.js';
import { checkResource, grantCacheKey, normaliseScope } from './token-exchange.service.js';
import { TokenRequestClient } from './token-request.client.js';
import type { TrustedZone } from '../zone/trusted-zones.js';

/**
 * What `ClientCredentialsService.token()` asks the zone for.
 * @publicApi
 */
export interface ClientCredentialsRequest {
  /** The API the token is for (RFC 8707 `resource`), e.g. `https://billing.internal`. */
  resource: string;
  /** Scopes to ask for: a space-delimited string or a list. @default what the zone grants */
  scope?: string | readonly string[];
  /**
   * With several trusted zones: the issuer URL of the zone to ask, exactly as configured (e.g. the
   * inbound token's `agent.issuer`, for the tenant the request belongs to).
   * @default the zone that issued the token of the request being served; outside one, with several
   *   zones, none (a `zone_required` error)
   */
  zone?: string;
  /** Asks for a DPoP-bound token, as {@link TokenExchangeRequest.dpop} does. */
  dpop?: DpopKey | { key: DpopKey; required?: boolean };
}

const CLIENT_CREDENTIALS = 'client_credentials';

/**
 * The service acting as itself (RFC 6749 §4.4 `client_credentials`): a token whose subject is this
 * service, for jobs and calls that no user started. Authenticates with the module's
 * `clientCredentials` (secret, `private_key_jwt` or workload identity), and shares the exchange's
 * machinery: cached until `expires_in` minus 30 s, identical concurrent requests collapsed into one,
 * at most one retry, typed {@link TokenExchangeError}s (catalogue V2, §I). With several zones it asks
 * the zone named by `zone`, else the zone that issued the token of the request being served (decision
 * Q22), with that zone's credentials; a token of one zone is never served for another.
 *
 * @example
 * ```ts
 * const { accessToken } = await this.asService.token({ resource: 'https://billing.internal', scope: 'invoices:write' });
 * ```
 * @throws TokenExchangeError (see its `kind`, `code`, `status`, `retryable`); before any request, kind
 *   `untrusted_issuer` when `zone` names no trusted zone, kind `zone_required` when several zones are
 *   trusted, `zone` is missing and no request verified at one of them is being served (a job).
 * @throws TypeError when `resource` is not an absolute URL.
 * @publicApi
 */
@Injectable()
export class ClientCredentialsService {
  constructor(private readonly client: TokenRequestClient) {}

  /** A token for `request.resource`, from the cache while it is fresh. */
  token(request: ClientCredentialsRequest): Promise<ExchangedToken> {
    const resource = checkResource('ClientCredentialsService.token', request?.resource);
    const scope = normaliseScope(request.scope);
    const dpop = dpopBinding('ClientCredentialsService.token', request.dpop);
    const form: Record<string, string> = { grant_type: CLIENT_CREDENTIALS, resource };
    if (scope) form.scope = scope;
    let zone: TrustedZone;
    try {
      zone = this.client.zoneFor(request.zone);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    const key = grantCacheKey([CLIENT_CREDENTIALS, zone.issuer, resource, scope ?? '', dpop?.key.thumbprint ?? '']);
    return this.client.request({ key, form, requestedScope: scope, zone: () => zone, dpop });
  }
}
