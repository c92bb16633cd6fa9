import { type ArgumentsHost, Catch, type ExceptionFilter, HttpStatus, Inject, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import {
  InvalidTokenException, type KeycardException, MissingCredentialsException,
} from '../resource-server/keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { rawRequestOf, ResourceResolver } from '../resource-server/resource-resolver.js';
import { LOG_MESSAGE_MAX_LENGTH, logSafe } from '../logging/log-safe.js';
import { ResourceAccessError } from './access-context.js';
import { ImpersonationRefusedError } from './impersonation.service.js';
import { TokenExchangeError } from './token-exchange.error.js';
import { WorkloadTokenFileError } from './workload-token-source.js';

/** OAuth errors that mean this service (not the caller) is misconfigured at the zone (I15, I16). */
const CONFIGURATION_CODES = new Set(['invalid_client', 'invalid_target', 'invalid_scope', 'unauthorized_client', 'unsupported_grant_type']);

/**
 * The longest `Retry-After` this API passes on from the zone, in seconds: a zone (or anything
 * between it and us) asking for days must not tell every caller of the API to stay away that long;
 * callers asking again after five minutes cost one 503 each. The error keeps the zone's own value.
 */
const MAX_RETRY_AFTER_SECONDS = 300;

/**
 * Answers a request whose handler failed to exchange a token (catalogue Q8): the caller's token was
 * refused → 401 `invalid_token`; the zone found it unacceptable for the exchange → 403; this
 * service's configuration → 500; a broken or redirecting zone → 502; overload → 503 with
 * `Retry-After` (the zone's, at most 300 s); a timeout → 504. Registered globally by `KeycardModule`; it handles nothing but
 * {@link TokenExchangeError}, and a grant's {@link ResourceAccessError} that the handler rethrew
 * (answered like the exchange failure behind it).
 * @publicApi
 */
@Catch(TokenExchangeError, ResourceAccessError)
@Injectable()
export class TokenExchangeExceptionFilter implements ExceptionFilter<TokenExchangeError | ResourceAccessError> {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly resources: ResourceResolver,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
  ) {}

  catch(error: TokenExchangeError | ResourceAccessError, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw error;
    const http = host.switchToHttp();
    const response = http.getResponse<object>();
    const adapter = this.adapterHost.httpAdapter;
    const { status, body, challenge } = this.answerFor(error);
    if (status >= 500) {
      const why = error instanceof ResourceAccessError ? `${error.reason}, ${error.cause?.kind ?? 'no exchange'}` : error.kind;
      this.options.logger.error(`Token exchange failed (${why}): ${logSafe(error.message, LOG_MESSAGE_MAX_LENGTH)}; answered ${status}`);
    }
    if (challenge) {
      let prm: string | undefined;
      try {
        prm = this.resources.forRequest(rawRequestOf(http.getRequest<object>())).metadataUrl;
      } catch {
        prm = undefined;
      }
      for (const [name, value] of Object.entries(challenge.headers(prm, this.options.realm))) adapter.setHeader(response, name, value);
    }
    if (status === HttpStatus.SERVICE_UNAVAILABLE) {
      const retryAfter = error instanceof ResourceAccessError ? error.cause?.retryAfterSeconds : error.retryAfterSeconds;
      adapter.setHeader(response, 'Retry-After', String(Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, retryAfter ?? 1))));
    }
    adapter.reply(response, body, status);
  }

  /**
   * The answer for one failure; exposed for apps that map errors themselves. A
   * {@link WorkloadTokenFileError} (the workload token file missing, empty or oversized, catalogue
   * I5, I6) is a `config` error answered 503, not 500: the platform is usually still writing the file.
   */
  answerFor(error: TokenExchangeError | ResourceAccessError): { status: number; body: object; challenge?: KeycardException } {
    if (error instanceof ResourceAccessError) {
      if (error.cause) return this.answerFor(error.cause);
      // No verified token to exchange (a grant on a @Public() route): ask for one.
      if (error.reason === 'no_inbound_token') {
        const challenge = new MissingCredentialsException();
        return { status: 401, body: challenge.getResponse() as object, challenge };
      }
      return { status: 500, body: { error: 'server_error', error_description: 'The service is misconfigured' } };
    }
    if (error instanceof ImpersonationRefusedError) {
      // The zone's policy does not let this service act as the user: a refusal, not a fault.
      return { status: 403, body: { error: 'forbidden', error_description: 'The authorization server refused this operation' }, challenge: new MissingCredentialsException() };
    }
    if (error.kind === 'untrusted_issuer') {
      // The subject token names no trusted zone: the caller's token is refused, nothing was sent.
      const challenge = new InvalidTokenException('issuer_mismatch');
      return { status: 401, body: challenge.getResponse() as object, challenge };
    }
    if (error.kind === 'oauth' && error.code === 'invalid_grant') {
      // The zone refused a token the guard found well formed and valid (revoked, expired there, its
      // session ended: RFC 6749 §5.2): for the caller it is no longer active, not malformed (I13).
      const challenge = new InvalidTokenException('token_inactive');
      return { status: 401, body: challenge.getResponse() as object, challenge };
    }
    if (error.kind === 'oauth' && error.code === 'invalid_request' && error.status === 400) {
      // RFC 8693 §2.2.2: the subject token is unacceptable here; no error code in the challenge (I14).
      return { status: 403, body: { error: 'forbidden', error_description: 'The access token cannot be used for this operation' }, challenge: new MissingCredentialsException() };
    }
    if (error instanceof WorkloadTokenFileError) {
      // Not mounted yet or being rotated by the kubelet: the caller may retry (Retry-After from the error).
      return { status: 503, body: { error: 'temporarily_unavailable', error_description: 'The service is temporarily unavailable, retry later' } };
    }
    // `zone_required`: the app asked for a grant without naming a zone where none can be inferred.
    if (error.kind === 'config' || error.kind === 'zone_required' || (error.kind === 'oauth' && CONFIGURATION_CODES.has(error.code ?? ''))) {
      return { status: 500, body: { error: 'server_error', error_description: 'The service is misconfigured' } };
    }
    if (error.kind === 'unavailable') {
      return { status: 503, body: { error: 'temporarily_unavailable', error_description: 'The authorization server is unavailable, retry later' } };
    }
    if (error.kind === 'timeout') {
      return { status: 504, body: { error: 'gateway_timeout', error_description: 'The authorization server did not answer in time' } };
    }
    return { status: 502, body: { error: 'bad_gateway', error_description: 'The authorization server answered unexpectedly' } };
  }
}
