import { HttpException, HttpStatus } from '@nestjs/common';

/**
 * Why a request was refused. Logged with the denial (never the token) and exposed as `code` on the
 * exception, so apps can tell denials apart without parsing messages.
 * @publicApi
 */
export type DenialReason =
  | 'no_credentials'
  | 'request_malformed'
  | 'multiple_tokens'
  | 'token_malformed'
  | 'token_too_long'
  | 'algorithm_not_allowed'
  | 'header_unsupported'
  | 'type_not_accepted'
  | 'key_not_found'
  | 'key_unusable'
  | 'signature_invalid'
  | 'claim_invalid'
  | 'issuer_mismatch'
  | 'audience_mismatch'
  | 'expired'
  | 'not_yet_valid'
  | 'issued_in_future'
  | 'token_bound'
  /** DPoP (RFC 9449): the proof is missing, malformed, wrongly signed, stale or for another request. */
  | 'dpop_proof_invalid'
  /** DPoP: the proof's `jti` was seen before (RFC 9449 §11.1). */
  | 'dpop_proof_replayed'
  /** DPoP: the proof key is not the key the token is bound to (`cnf.jkt`). */
  | 'dpop_key_mismatch'
  /** DPoP on: a DPoP-bound token sent with the Bearer scheme (RFC 9449 §7.2, catalogue C26). */
  | 'dpop_scheme_required'
  /** DPoP: a token without `cnf.jkt` sent with the DPoP scheme. */
  | 'dpop_token_unbound'
  /** DPoP: the proof lacks a current server nonce (RFC 9449 §9). */
  | 'dpop_nonce_required'
  /** DPoP: a DPoP-bound token where no proof can be checked (a message payload, gRPC, TCP). */
  | 'dpop_carrier_unsupported'
  /** DPoP: the shared replay store cannot answer and the module is configured to refuse then. */
  | 'dpop_replay_store_unavailable'
  | 'insufficient_scope'
  /** A claim or delegation-chain predicate failed: 403 `insufficient_scope` without `scope` (catalogue Q27). */
  | 'insufficient_permission'
  /** RFC 9470: the user's sign-in is too weak (`acr`) or too old (`auth_time`). */
  | 'insufficient_user_authentication'
  /** An argument-dependent requirement failed (threw, or returned no valid scopes): 500 (catalogue T13). */
  | 'policy_failed'
  | 'zone_unavailable'
  /** The zone answers, but not as configured (its metadata `issuer` is not `zoneUrl`, it has no metadata): 503 until fixed. */
  | 'zone_misconfigured'
  | 'resource_unconfigured'
  | 'unsupported_context'
  | 'rate_limited'
  /** The token matched the revocation list (a session, user, agent or token revoked before its `exp`). */
  | 'revoked'
  /** RFC 7662: the zone's introspection endpoint answered `active: false` (revoked, expired or unknown there). */
  | 'token_inactive'
  /** A route that demands freshness, while the revocation list cannot vouch for it (Redis or the SSF stream down, Q35): 503. */
  | 'freshness_unknown'
  /** A session presented by another principal than its owner (Q18, Q19): an MCP session (answered as an unknown one, 404), a socket.io recovery (400). */
  | 'session_principal_mismatch'
  /** A handler's token exchange failed (catalogue Q8): answered outside HTTP routes as `TokenExchangeExceptionFilter.answerFor()` says (403, 500, 502, 503, 504). */
  | 'exchange_failed';

/**
 * The only texts ever sent as `error_description` (catalogue INV2): fixed, printable ASCII without
 * `"` or `\`, and never built from token content, claim values or library messages.
 */
export const ERROR_DESCRIPTIONS = {
  malformed: 'The access token is malformed',
  signature: 'The access token signature could not be verified',
  type: 'The access token type is not accepted',
  claims: 'The access token claims are invalid',
  issuer: 'The access token was not issued by the expected authorization server',
  audience: 'The access token was not issued for this resource',
  expired: 'The access token expired',
  notYetValid: 'The access token is not valid yet',
  bound: 'The access token is bound to a key and cannot be used as a bearer token',
  multiple: 'More than one access token was sent',
  request: 'The request is malformed',
  scope: 'The access token lacks a required scope',
  permission: 'The access token lacks a required permission',
  userAuthentication: 'A stronger or more recent user authentication is required',
  policy: 'The request could not be authorized',
  unavailable: 'The authorization server is unreachable, retry later',
  misconfigured: 'The resource server is misconfigured',
  unsupportedContext: 'This kind of request is not supported',
  rateLimited: 'Too many requests, retry later',
  dpopProof: 'The DPoP proof is invalid',
  dpopBinding: 'Invalid DPoP key binding',
  dpopScheme: 'DPoP-bound token requires the DPoP authentication scheme',
  dpopUnbound: 'The access token is not bound to a DPoP key',
  dpopNonce: 'A DPoP nonce issued by this server is required',
  dpopCarrier: 'DPoP-bound tokens need the DPoP scheme on an HTTP request',
  revoked: 'The access token has been revoked',
  inactive: 'The access token is not active',
  freshnessUnknown: 'The revocation status cannot be checked, retry later',
  // A handler's token exchange failed (catalogue Q8, `TokenExchangeExceptionFilter.answerFor()`).
  exchangeRefused: 'The authorization server refused this operation',
  exchangeTokenUnusable: 'The access token cannot be used for this operation',
  exchangeMisconfigured: 'The service is misconfigured',
  exchangeUnavailable: 'The authorization server is unavailable, retry later',
  /** The workload token file has no token for now (catalogue I5, I6: not mounted yet, or being rotated). */
  exchangeCredentialsUnavailable: 'The service is temporarily unavailable, retry later',
  exchangeTimeout: 'The authorization server did not answer in time',
  exchangeUnexpected: 'The authorization server answered unexpectedly',
} as const;

/** A fixed description of {@link ERROR_DESCRIPTIONS}. */
export type ErrorDescription = (typeof ERROR_DESCRIPTIONS)[keyof typeof ERROR_DESCRIPTIONS];

const DESCRIPTION_OF: Record<DenialReason, string> = {
  no_credentials: 'Authentication is required',
  request_malformed: ERROR_DESCRIPTIONS.request,
  multiple_tokens: ERROR_DESCRIPTIONS.multiple,
  token_malformed: ERROR_DESCRIPTIONS.malformed,
  token_too_long: ERROR_DESCRIPTIONS.malformed,
  algorithm_not_allowed: ERROR_DESCRIPTIONS.signature,
  header_unsupported: ERROR_DESCRIPTIONS.malformed,
  type_not_accepted: ERROR_DESCRIPTIONS.type,
  key_not_found: ERROR_DESCRIPTIONS.signature,
  key_unusable: ERROR_DESCRIPTIONS.signature,
  signature_invalid: ERROR_DESCRIPTIONS.signature,
  claim_invalid: ERROR_DESCRIPTIONS.claims,
  issuer_mismatch: ERROR_DESCRIPTIONS.issuer,
  audience_mismatch: ERROR_DESCRIPTIONS.audience,
  expired: ERROR_DESCRIPTIONS.expired,
  not_yet_valid: ERROR_DESCRIPTIONS.notYetValid,
  issued_in_future: ERROR_DESCRIPTIONS.notYetValid,
  token_bound: ERROR_DESCRIPTIONS.bound,
  dpop_proof_invalid: ERROR_DESCRIPTIONS.dpopProof,
  dpop_proof_replayed: ERROR_DESCRIPTIONS.dpopProof,
  dpop_key_mismatch: ERROR_DESCRIPTIONS.dpopBinding,
  dpop_scheme_required: ERROR_DESCRIPTIONS.dpopScheme,
  dpop_token_unbound: ERROR_DESCRIPTIONS.dpopUnbound,
  dpop_nonce_required: ERROR_DESCRIPTIONS.dpopNonce,
  dpop_carrier_unsupported: ERROR_DESCRIPTIONS.dpopCarrier,
  dpop_replay_store_unavailable: ERROR_DESCRIPTIONS.unavailable,
  insufficient_scope: ERROR_DESCRIPTIONS.scope,
  insufficient_permission: ERROR_DESCRIPTIONS.permission,
  insufficient_user_authentication: ERROR_DESCRIPTIONS.userAuthentication,
  policy_failed: ERROR_DESCRIPTIONS.policy,
  zone_unavailable: ERROR_DESCRIPTIONS.unavailable,
  zone_misconfigured: ERROR_DESCRIPTIONS.misconfigured,
  resource_unconfigured: ERROR_DESCRIPTIONS.misconfigured,
  unsupported_context: ERROR_DESCRIPTIONS.unsupportedContext,
  rate_limited: ERROR_DESCRIPTIONS.rateLimited,
  revoked: ERROR_DESCRIPTIONS.revoked,
  token_inactive: ERROR_DESCRIPTIONS.inactive,
  freshness_unknown: ERROR_DESCRIPTIONS.freshnessUnknown,
  // Never sent: the MCP transport answers it as an unknown session (catalogue Q19).
  session_principal_mismatch: ERROR_DESCRIPTIONS.request,
  // Each ExchangeFailedException names its own; this one is never sent.
  exchange_failed: ERROR_DESCRIPTIONS.exchangeUnexpected,
};

/** Parameters of a `Bearer` challenge, in the order they are written. */
export interface ChallengeParams {
  realm?: string;
  error?: 'invalid_token' | 'invalid_request' | 'insufficient_scope' | 'insufficient_user_authentication' | 'invalid_dpop_proof' | 'use_dpop_nonce';
  error_description?: string;
  /** RFC 9470 §3. */
  acr_values?: string;
  /** RFC 9470 §3, seconds. */
  max_age?: string;
  scope?: string;
  resource_metadata?: string;
}

/**
 * Base of every refusal the guard answers with: an `HttpException` whose JSON body is
 * `{ error, error_description }` and which knows the headers that must go with it. The guard writes
 * those headers on the response before throwing, so any exception filter keeps them.
 * @publicApi
 */
export abstract class KeycardException extends HttpException {
  /**
   * Headers to set on the response (e.g. `WWW-Authenticate`, `Retry-After`).
   * @param requiredScopes the route's required scopes, space-joined: 401 challenges carry them as
   *   `scope` (catalogue Q12, RFC 6750 §3) so clients ask for no more than the route needs.
   */
  abstract headers(
    resourceMetadataUrl: string | undefined,
    realm: string | undefined,
    requiredScopes?: string,
  ): Record<string, string>;

  /**
   * The `scope` this refusal names, in a challenge or a non-HTTP error (GraphQL `extensions`,
   * WebSocket and RPC error fields): a 401 names the call's required scopes (catalogue Q12, Q16), a
   * 403 the scopes it lacks, other refusals none.
   * @param _requiredScopes the call's required scopes, space-joined; `undefined` when it requires none.
   * @internal
   */
  scopeNamed(_requiredScopes: string | undefined): string | undefined {
    return undefined;
  }

  /**
   * Parameters this refusal adds to its challenge and to the error of other contexts (GraphQL
   * `extensions`, WebSocket and RPC error fields) beyond `error`, `error_description` and `scope`:
   * RFC 9470's `acr_values` and `max_age`.
   * @internal
   */
  challengeParams(): Readonly<Record<string, string>> | undefined {
    return undefined;
  }

  /** The challenge of an error answer: `error`, its fixed description, then any extra parameters and `scope`. */
  protected errorChallenge(
    error: NonNullable<ChallengeParams['error']>,
    prm: string | undefined,
    realm: string | undefined,
    scope?: string,
  ): Record<string, string> {
    return {
      'WWW-Authenticate': challenge({ realm, error, error_description: DESCRIPTION_OF[this.code], ...this.challengeParams(), scope, resource_metadata: prm }),
    };
  }

  /** Stable reason, for logs and apps; never sent to the client beyond the fixed description. */
  readonly code: DenialReason;

  /** @param description the fixed text sent as `error_description`: the reason's own unless a subclass names another of `ERROR_DESCRIPTIONS`. */
  protected constructor(code: DenialReason, status: HttpStatus, error: string, description: string = DESCRIPTION_OF[code]) {
    // A refusal (4xx) is an answer, not a fault: no stack is captured for it, which is most of what
    // constructing one costs (a refused message or field of a burst, catalogue O5). A 5xx keeps its stack.
    const limit = Error.stackTraceLimit;
    if (status < 500) Error.stackTraceLimit = 0;
    try {
      super({ error, error_description: description }, status, { description });
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.code = code;
  }

  /**
   * Nest's message of the class (`Insufficient Scope Exception`, from its name), worked out once per
   * class rather than by a regex match and join per refusal; the same text as before.
   * @internal
   */
  override initMessage(): void {
    const message = MESSAGE_OF.get(this.constructor);
    if (message !== undefined) {
      this.message = message;
      return;
    }
    super.initMessage();
    MESSAGE_OF.set(this.constructor, this.message);
  }
}

/** Each refusal class's message (the constructor's body is always the `{ error, error_description }` object: the class name decides it). */
const MESSAGE_OF = new Map<object, string>();

function challenge(params: ChallengeParams): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(params) as [keyof ChallengeParams, string | undefined][]) {
    if (value !== undefined) parts.push(`${name}="${value}"`);
  }
  return parts.length > 0 ? `Bearer ${parts.join(', ')}` : 'Bearer';
}

/** 401 without an error code: no credentials, or another auth scheme (RFC 6750 §3.1). */
export class MissingCredentialsException extends KeycardException {
  constructor() {
    super('no_credentials', HttpStatus.UNAUTHORIZED, 'unauthorized');
  }
  override scopeNamed(requiredScopes: string | undefined) {
    return requiredScopes;
  }
  headers(prm: string | undefined, realm: string | undefined, requiredScopes?: string) {
    return { 'WWW-Authenticate': challenge({ realm, scope: this.scopeNamed(requiredScopes), resource_metadata: prm }) };
  }
}

/** 401 `invalid_token`: the token is malformed, expired, forged or meant for someone else. */
export class InvalidTokenException extends KeycardException {
  constructor(code: DenialReason) {
    super(code, HttpStatus.UNAUTHORIZED, 'invalid_token');
  }
  override scopeNamed(requiredScopes: string | undefined) {
    return requiredScopes;
  }
  headers(prm: string | undefined, realm: string | undefined, requiredScopes?: string) {
    return this.errorChallenge('invalid_token', prm, realm, this.scopeNamed(requiredScopes));
  }
}

/** 400 `invalid_request`: more than one token, the request cannot be read, or it resumes another principal's session. */
export class InvalidRequestException extends KeycardException {
  constructor(code: DenialReason = 'multiple_tokens') {
    super(code, HttpStatus.BAD_REQUEST, 'invalid_request');
  }
  headers(prm: string | undefined, realm: string | undefined) {
    return this.errorChallenge('invalid_request', prm, realm);
  }
}

/** 403 `insufficient_scope`, listing every scope the route requires (catalogue D9). */
export class InsufficientScopeException extends KeycardException {
  constructor(readonly requiredScopes: readonly string[]) {
    super('insufficient_scope', HttpStatus.FORBIDDEN, 'insufficient_scope');
  }
  override scopeNamed() {
    return this.requiredScopes.join(' ');
  }
  headers(prm: string | undefined, realm: string | undefined) {
    return this.errorChallenge('insufficient_scope', prm, realm, this.scopeNamed());
  }
}

/**
 * 403 `insufficient_scope` without `scope` (catalogue Q27, T18): the token is valid, but a claim or
 * delegation-chain requirement fails, so no scope would help. When a scope is missing too, the
 * refusal is an {@link InsufficientScopeException} naming it (T19).
 */
export class InsufficientPermissionException extends KeycardException {
  constructor() {
    super('insufficient_permission', HttpStatus.FORBIDDEN, 'insufficient_scope');
  }
  headers(prm: string | undefined, realm: string | undefined) {
    return this.errorChallenge('insufficient_scope', prm, realm);
  }
}

/** What an RFC 9470 step-up challenge asks for: the unmet parts only (§3). */
export interface StepUpParams {
  /** Acceptable `acr` values, space-separated, in order of preference. */
  readonly acrValues?: string;
  /** Seconds since the last active authentication. */
  readonly maxAge?: number;
}

/**
 * 401 `insufficient_user_authentication` (RFC 9470 §3, catalogue T20–T24, Q28): the user must sign
 * in again, more strongly (`acr_values`) or more recently (`max_age`). The challenge also names every
 * scope the call needs (`scope`, MAY), so the client asks once.
 */
export class InsufficientUserAuthenticationException extends KeycardException {
  private readonly params: Readonly<Record<string, string>>;

  constructor(
    stepUp: StepUpParams,
    readonly requiredScopes: readonly string[],
  ) {
    super('insufficient_user_authentication', HttpStatus.UNAUTHORIZED, 'insufficient_user_authentication');
    const params: Record<string, string> = {};
    if (stepUp.acrValues !== undefined) params.acr_values = stepUp.acrValues;
    if (stepUp.maxAge !== undefined) params.max_age = String(stepUp.maxAge);
    this.params = Object.freeze(params);
  }
  override challengeParams() {
    return this.params;
  }
  override scopeNamed() {
    return this.requiredScopes.length > 0 ? this.requiredScopes.join(' ') : undefined;
  }
  headers(prm: string | undefined, realm: string | undefined) {
    return this.errorChallenge('insufficient_user_authentication', prm, realm, this.scopeNamed());
  }
}

/**
 * 500 with a fixed body (catalogue T13, Q25): an argument-dependent requirement threw or returned
 * no valid scopes. A policy bug fails closed; the handler never runs.
 */
export class PolicyFailedException extends KeycardException {
  constructor() {
    super('policy_failed', HttpStatus.INTERNAL_SERVER_ERROR, 'server_error');
  }
  headers() {
    return {};
  }
}

/**
 * 503 with `Retry-After`: the zone's metadata or keys cannot be had, so no token can be judged.
 * Deliberately not `invalid_token` (catalogue Q5, INV4): the client did nothing wrong.
 */
export class ZoneUnavailableException extends KeycardException {
  /**
   * @param retryAfterSeconds when the zone is asked again (`Retry-After`).
   * @param code `zone_misconfigured` when the zone answers but not as configured (the body then says
   *   the resource server is misconfigured rather than "retry later").
   */
  constructor(
    readonly retryAfterSeconds: number,
    code: 'zone_unavailable' | 'zone_misconfigured' = 'zone_unavailable',
  ) {
    super(code, HttpStatus.SERVICE_UNAVAILABLE, 'temporarily_unavailable');
  }
  headers() {
    return { 'Retry-After': String(Math.max(1, Math.ceil(this.retryAfterSeconds))) };
  }
}

/**
 * 503 with `Retry-After` on a route that demands freshness, while the revocation list cannot vouch
 * that it is current (catalogue Q35): not `invalid_token`, the token may well be good.
 */
export class FreshnessUnknownException extends KeycardException {
  constructor(readonly retryAfterSeconds: number) {
    super('freshness_unknown', HttpStatus.SERVICE_UNAVAILABLE, 'temporarily_unavailable');
  }
  headers() {
    return { 'Retry-After': String(Math.max(1, Math.ceil(this.retryAfterSeconds))) };
  }
}

/**
 * 429 with `Retry-After`: the agent sent too many requests (`KeycardThrottlerGuard`), as it reaches
 * clients of GraphQL, WebSocket and microservice contexts.
 */
export class RateLimitedException extends KeycardException {
  constructor(readonly retryAfterSeconds: number) {
    super('rate_limited', HttpStatus.TOO_MANY_REQUESTS, 'rate_limited');
  }
  headers() {
    return { 'Retry-After': String(Math.max(1, Math.ceil(this.retryAfterSeconds))) };
  }
}

/** 500: the module cannot tell which resource a request is for (no `resource` configured). */
export class ResourceNotConfiguredException extends KeycardException {
  constructor(code: DenialReason = 'resource_unconfigured') {
    super(code, HttpStatus.INTERNAL_SERVER_ERROR, 'server_error');
  }
  headers() {
    return {};
  }
}

/**
 * A handler's failed token exchange (catalogue Q8) as the refusal of the call that needed it, where
 * no KeycardException says it already: the status and fixed body
 * `TokenExchangeExceptionFilter.answerFor()` gives (403 `forbidden`, 500 `server_error`, 502
 * `bad_gateway`, 503 `temporarily_unavailable`, 504 `gateway_timeout`), so a GraphQL field, a gateway
 * message or a gRPC call is answered in its door's shape as an HTTP route is. Its headers are the
 * challenge that goes with the answer (a bare one for a 403) and, for a 503, `Retry-After`.
 */
export class ExchangeFailedException extends KeycardException {
  constructor(
    status: HttpStatus,
    error: string,
    description: ErrorDescription,
    private readonly challenge?: KeycardException,
    /** Seconds for `Retry-After` (503), already bounded by the filter. */
    readonly retryAfterSeconds?: number,
  ) {
    super('exchange_failed', status, error, description);
  }
  headers(prm: string | undefined, realm: string | undefined): Record<string, string> {
    const headers = this.challenge?.headers(prm, realm) ?? {};
    return this.retryAfterSeconds === undefined ? headers : { ...headers, 'Retry-After': String(this.retryAfterSeconds) };
  }
}
