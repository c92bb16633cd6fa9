import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { ExchangedToken, TokenExchangeRequest } from './exchanged-token.interface.js';
import { tokenFingerprint } from './token-fingerprint.js';
import { dpopBinding, type DpopBinding } from './dpop-binding.js';
import { MAX_DECODED_SUBJECT_LENGTH, TokenRequestClient } from './token-request.client.js';

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 §3 token type of an OAuth access token. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * Trades a user's zone token for a short-lived token scoped to one API (RFC 8693), authenticating
 * this service with the configured `clientCredentials` — with several zones, at the zone that issued
 * the subject token (its `iss`), with that zone's credentials. Results are cached per (subject token hash,
 * resource, scope, audience, actor, requested type) until shortly before they expire and never past
 * the subject token's own expiry; identical concurrent exchanges share one request. The subject
 * token is keyed by its decoded signature, so respellings of one token share one entry (V5).
 *
 * @example
 * ```ts
 * const { accessToken } = await this.exchange.exchange({ subjectToken, resource: 'https://api.example.com', scope: 'read' });
 * ```
 * @throws TokenExchangeError (see its `kind`, `code`, `status`, `retryable`); kind `untrusted_issuer`,
 *   before any request, when several zones are trusted and the subject token's `iss` names none.
 * @throws TypeError when `subjectToken` is empty or `resource` is not an absolute URL.
 * @publicApi
 */
@Injectable()
export class TokenExchangeService {
  constructor(private readonly client: TokenRequestClient) {}

  /**
   * Exchanges `request.subjectToken` for a token for `request.resource`.
   * @param agent the verified agent of the subject token, when the caller has it (`@Grant`): its
   *   `exchanged` decision event names it (catalogue W5). Never sent to the zone.
   */
  exchange(request: TokenExchangeRequest, agent?: AgentContext): Promise<ExchangedToken> {
    const normalised = normaliseRequest(request);
    const form: Record<string, string> = {
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: normalised.subjectToken,
      subject_token_type: ACCESS_TOKEN_TYPE,
      resource: normalised.resource,
    };
    if (normalised.scope) form.scope = normalised.scope;
    if (normalised.audience) form.audience = normalised.audience;
    if (normalised.actorToken) {
      form.actor_token = normalised.actorToken;
      form.actor_token_type = ACCESS_TOKEN_TYPE;
    }
    if (normalised.requestedTokenType) form.requested_token_type = normalised.requestedTokenType;
    return this.client.request({
      key: cacheKey(normalised),
      dpop: normalised.dpop,
      form,
      requestedScope: normalised.scope,
      cacheNotAfter: expiryOf(normalised.subjectToken),
      zone: () => this.client.zoneOfSubjectToken(normalised.subjectToken),
      agent,
    });
  }
}

interface NormalisedRequest {
  subjectToken: string;
  resource: string;
  scope?: string;
  audience?: string;
  actorToken?: string;
  requestedTokenType?: string;
  dpop?: DpopBinding;
}

function normaliseRequest(request: TokenExchangeRequest): NormalisedRequest {
  if (typeof request?.subjectToken !== 'string' || request.subjectToken === '') {
    throw new TypeError("TokenExchangeService.exchange: 'subjectToken' must be a non-empty string");
  }
  return {
    subjectToken: request.subjectToken,
    resource: checkResource('TokenExchangeService.exchange', request.resource),
    scope: normaliseScope(request.scope),
    audience: request.audience || undefined,
    actorToken: request.actorToken || undefined,
    requestedTokenType: request.requestedTokenType || undefined,
    dpop: dpopBinding('TokenExchangeService.exchange', request.dpop),
  };
}

/**
 * `resource` as the zone receives it; an absolute URL (RFC 8707 §2).
 * @throws TypeError naming the caller otherwise.
 * @internal
 */
export function checkResource(caller: string, resource: unknown): string {
  if (typeof resource !== 'string' || !URL.canParse(resource)) throw new TypeError(`${caller}: 'resource' must be an absolute URL`);
  return resource;
}

/**
 * Scopes as one space-delimited string, without duplicates and in code-unit order, or undefined for
 * none. A scope is a set (RFC 6749 §3.3: the order of its strings does not matter), so `'b a'`,
 * `['a', 'b']` and `'a b a'` ask for the same token: one form sent, one cache entry, one flight.
 * @internal
 */
export function normaliseScope(scope: string | readonly string[] | undefined): string | undefined {
  const scopes = typeof scope === 'string' ? scope.split(' ') : (scope ?? []);
  return [...new Set(scopes.filter(Boolean))].sort().join(' ') || undefined;
}

/** A cache key over a grant's inputs: hashes only, never a raw token (I27). @internal */
export function grantCacheKey(parts: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url');
}

function cacheKey(request: NormalisedRequest): string {
  return grantCacheKey([
    TOKEN_EXCHANGE_GRANT,
    tokenFingerprint(request.subjectToken),
    request.resource,
    request.scope ?? '',
    request.audience ?? '',
    request.actorToken ? tokenFingerprint(request.actorToken) : '',
    request.requestedTokenType ?? '',
    // A token bound to one key is no use to a caller holding another (H29).
    request.dpop?.key.thumbprint ?? '',
  ]);
}

/** `exp` of a JWT subject token, read without verification: it only shortens how long we cache. */
function expiryOf(token: string): number | undefined {
  if (token.length > MAX_DECODED_SUBJECT_LENGTH) return undefined;
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
