import {
  type ArgumentsHost, Catch, type ExceptionFilter, type ExecutionContext, HttpStatus, Inject, Injectable, Optional,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import { defer, type Observable } from 'rxjs';
import type { CallKind, Carrier, Refusal } from '../contexts/call-kind.interface.js';
import { GrpcStreamCallRefused } from '../contexts/grpc-stream-refused.filter.js';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import { webSocketsLoaded } from '../contexts/optional-peers.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import {
  ERROR_DESCRIPTIONS, ExchangeFailedException, InvalidTokenException, KeycardException, MissingCredentialsException,
} from '../resource-server/keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { rawRequestOf, ResourceResolver } from '../resource-server/resource-resolver.js';
import { logSafe } from '../logging/log-safe.js';
import { SystemClock } from '../clock.js';
import { ResourceAccessError } from './access-context.js';
import { CONFIGURATION_CODES, ExchangeFailureLog } from './exchange-failure-log.js';
import { ImpersonationRefusedError } from './impersonation.service.js';
import { TokenExchangeError } from './token-exchange.error.js';
import { WorkloadTokenFileError } from './workload-token-source.js';


/**
 * The longest `Retry-After` this API passes on from the zone, in seconds: a zone (or anything
 * between it and us) asking for days must not tell every caller of the API to stay away that long;
 * callers asking again after five minutes cost one 503 each. The error keeps the zone's own value.
 */
const MAX_RETRY_AFTER_SECONDS = 300;

/** What {@link TokenExchangeExceptionFilter.answerFor} answers a failure with. */
type Answer = { status: number; body: object; challenge?: KeycardException };

/**
 * Answers a call whose handler failed to exchange a token (catalogue Q8): the caller's token was
 * refused → 401 `invalid_token`; the zone found it unacceptable for the exchange → 403; this
 * service's configuration → 500; a broken or redirecting zone → 502; overload → 503 with
 * `Retry-After` (the zone's, at most 300 s); a timeout → 504. Registered globally by `KeycardModule`; it handles nothing but
 * {@link TokenExchangeError}, and a grant's {@link ResourceAccessError} that the handler rethrew
 * (answered like the exchange failure behind it).
 *
 * Every door answers with the same status, OAuth `error` and fixed description, in its own shape,
 * as the guard's refusals travel there (never the error's message, the zone's text or a stack):
 * an HTTP route the JSON body with its challenge; a GraphQL field (Apollo, Mercurius) a GraphQL
 * error whose `extensions.code` is the status's (`UNAUTHENTICATED`, `FORBIDDEN`,
 * `INTERNAL_SERVER_ERROR`, `BAD_GATEWAY`, `SERVICE_UNAVAILABLE`, `GATEWAY_TIMEOUT`), over HTTP with
 * the challenge and `Retry-After`; a socket.io or `ws` message the `exception` event
 * `{ status: 'error', error, error_description }`; a gRPC call the status (16, 7, 13, 14, 4) with
 * the description as details and the headers as trailers; an mcp-nest tool its `isError` result.
 * A failure out of a stream the handler already returned, where Nest runs no filter, gets the
 * same answer (`answerInStream()`): an `@Sse()` route whose head is sent one final `event: error`
 * with `{ error, error_description }`, then the end of the response (as at expiry, Q20); a GraphQL
 * subscription's async generator the field's GraphQL error, sent as the subscription's `error`
 * message. A 5xx is logged as an error ({@link ExchangeFailureLog}: a misconfiguration once per
 * interval), without the zone's text beyond what `logSafe` lets through. A {@link WorkloadTokenFileError}
 * (the workload token file missing, empty or oversized: I5, I6) is a configuration error answered
 * 503 with `Retry-After`, as the platform is usually still writing the file.
 * @publicApi
 */
@Catch(TokenExchangeError, ResourceAccessError)
@Injectable()
export class TokenExchangeExceptionFilter implements ExceptionFilter<TokenExchangeError | ResourceAccessError> {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly resources: ResourceResolver,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    /** The doors of other contexts; without them (a filter made by hand) a failure outside HTTP escapes as it is. */
    @Optional() private readonly contexts?: KeycardContexts,
    /** How failures are logged; a filter made by hand logs with the system clock. */
    @Optional() private readonly failures: ExchangeFailureLog = new ExchangeFailureLog(options, new SystemClock()),
  ) {}

  /**
   * Over HTTP, replies. Elsewhere, what Nest's handler of that context expects from a filter: a
   * GraphQL field's error is thrown; a gRPC or other microservice call gets an Observable that fails
   * with the refusal's error, as Nest's own RPC filter returns; a gateway message's `exception`
   * event is sent here (Nest ignores what a gateway filter returns).
   */
  catch(error: TokenExchangeError | ResourceAccessError, host: ArgumentsHost): unknown {
    const type = host.getType<string>();
    const kind = type === 'http' ? undefined : this.contexts?.kindOf(host as ExecutionContext);
    if (type !== 'http' && kind === undefined) throw error; // a context the module does not judge: as before
    const answer = this.answerFor(error);
    if (kind !== undefined) return this.answerElsewhere(kind, host as ExecutionContext, error, answer);
    this.failures.answered({ error, status: answer.status });
    const http = host.switchToHttp();
    const response = http.getResponse<object>();
    const adapter = this.adapterHost.httpAdapter;
    for (const [name, value] of Object.entries(this.headersOf(error, answer, () => rawRequestOf(http.getRequest<object>())))) {
      adapter.setHeader(response, name, value);
    }
    adapter.reply(response, answer.body, answer.status);
    return undefined;
  }

  /**
   * The answer's headers: the challenge (with the resource metadata URL of the request, when it
   * can be told) and, for a 503, `Retry-After` (the zone's, between 1 and 300 s).
   */
  private headersOf(error: TokenExchangeError | ResourceAccessError, { status, challenge }: Answer, request: () => IncomingMessage | undefined): Record<string, string> {
    const headers: Record<string, string> = {};
    if (challenge) {
      let prm: string | undefined;
      try {
        const raw = request();
        prm = raw === undefined ? this.options.resources[0]?.metadataUrl : this.resources.forRequest(raw).metadataUrl;
      } catch {
        prm = undefined;
      }
      Object.assign(headers, challenge.headers(prm, this.options.realm));
    }
    if (status === HttpStatus.SERVICE_UNAVAILABLE) headers['Retry-After'] = String(retryAfterOf(error));
    return headers;
  }

  /**
   * The answer as a refusal of the call's door ({@link CallKind.refuse}), made what Nest's handler
   * of its context expects from a filter (see {@link catch}).
   */
  private answerElsewhere(kind: CallKind, context: ExecutionContext, error: TokenExchangeError | ResourceAccessError, answer: Answer): unknown {
    const call = { kind, context, carrier: kind.carrier(context) };
    const denial = asDenial(error, answer);
    this.failures.answered({ error, status: answer.status, call, denial });
    const refused = this.refusedBy(call, error, answer, denial);
    switch (context.getType<string>()) {
      case 'ws':
        // Nest's gateway handler ignores a filter's result: the event is sent here, by Nest's own
        // filter (NestJS 12 writes it to a `ws` socket, NestJS 11 emits it, relayed by the refusal).
        void Promise.resolve(refused)
          .then((exception) => new (webSocketsLoaded()!.BaseWsExceptionFilter)().catch(exception, context))
          .catch((failure: unknown) => this.options.logger.error(`Token exchange failure not sent: ${logSafe((failure as Error)?.name ?? typeof failure)}`));
        return undefined;
      case 'rpc':
        return rpcAnswer(refused);
      default:
        // GraphQL: the field's error (Nest's external handler passes a thrown error on as it is).
        if (refused instanceof Promise) return refused.then((exception) => Promise.reject(exception));
        throw refused;
    }
  }

  /** The door's refusal ({@link CallKind.refuse}) carrying the answer: the error its context throws, its headers written where it has them. */
  private refusedBy(
    { kind, context, carrier }: { kind: CallKind; context: ExecutionContext; carrier: Carrier },
    error: TokenExchangeError | ResourceAccessError,
    answer: Answer,
    denial: KeycardException,
  ): Error | Promise<Error> {
    let headers: Record<string, string> | undefined;
    // Built when the door reads them (a gateway message has nowhere to write them).
    const headersOnce = () => (headers ??= this.headersOf(error, answer, () => kind.httpRequest(context, carrier)));
    const refusal: Refusal = {
      denial,
      context,
      carrier,
      get headers() {
        return headersOnce();
      },
    };
    return kind.refuse(refusal);
  }

  /**
   * Answers `error` when it comes out of a stream its handler already returned, where Nest runs no
   * exception filter: an `@Sse()` route's Observable once the response head is out, a GraphQL
   * subscription's event iterator (put by `KeycardStreams`, `StreamExchangeFailures`). Logged as
   * {@link catch} logs it; the answer is {@link answerFor}'s, as `denial` (what an SSE stream's last
   * event carries: the head is sent, no header is written) and as the door's refusal `refused`
   * (a GraphQL subscription: the field's error, what {@link catch} throws for it). `undefined` in
   * a context the module does not judge, or without the doors (a filter made by hand): the error
   * then goes on as it is.
   * @internal
   */
  answerInStream(
    error: TokenExchangeError | ResourceAccessError,
    context: ExecutionContext,
  ): { denial: KeycardException; refused: Error | Promise<Error> } | undefined {
    const kind = this.contexts?.kindOf(context);
    if (kind === undefined) return undefined;
    const answer = this.answerFor(error);
    const call = { kind, context, carrier: kind.carrier(context) };
    const denial = asDenial(error, answer);
    this.failures.answered({ error, status: answer.status, call, denial });
    // Over HTTP the head is out: the HTTP door's refusal would only write headers.
    return { denial, refused: context.getType<string>() === 'http' ? denial : this.refusedBy(call, error, answer, denial) };
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
      return { status: 500, body: { error: 'server_error', error_description: ERROR_DESCRIPTIONS.exchangeMisconfigured } };
    }
    if (error instanceof ImpersonationRefusedError) {
      // The zone's policy does not let this service act as the user: a refusal, not a fault.
      return { status: 403, body: { error: 'forbidden', error_description: ERROR_DESCRIPTIONS.exchangeRefused }, challenge: new MissingCredentialsException() };
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
      return { status: 403, body: { error: 'forbidden', error_description: ERROR_DESCRIPTIONS.exchangeTokenUnusable }, challenge: new MissingCredentialsException() };
    }
    if (error instanceof WorkloadTokenFileError) {
      // Not mounted yet or being rotated by the kubelet: the caller may retry (Retry-After from the error).
      return { status: 503, body: { error: 'temporarily_unavailable', error_description: ERROR_DESCRIPTIONS.exchangeCredentialsUnavailable } };
    }
    // `zone_required`: the app asked for a grant without naming a zone where none can be inferred.
    if (error.kind === 'config' || error.kind === 'zone_required' || (error.kind === 'oauth' && CONFIGURATION_CODES.has(error.code ?? ''))) {
      return { status: 500, body: { error: 'server_error', error_description: ERROR_DESCRIPTIONS.exchangeMisconfigured } };
    }
    if (error.kind === 'unavailable') {
      return { status: 503, body: { error: 'temporarily_unavailable', error_description: ERROR_DESCRIPTIONS.exchangeUnavailable } };
    }
    if (error.kind === 'timeout') {
      return { status: 504, body: { error: 'gateway_timeout', error_description: ERROR_DESCRIPTIONS.exchangeTimeout } };
    }
    return { status: 502, body: { error: 'bad_gateway', error_description: ERROR_DESCRIPTIONS.exchangeUnexpected } };
  }
}

/** The `Retry-After` of a 503: the zone's, in whole seconds (rounded up), between 1 and {@link MAX_RETRY_AFTER_SECONDS}; 1 without one. */
function retryAfterOf(error: TokenExchangeError | ResourceAccessError): number {
  const retryAfter = error instanceof ResourceAccessError ? error.cause?.retryAfterSeconds : error.retryAfterSeconds;
  // Whole seconds (RFC 9110 §10.2.3 delay-seconds): an app's own error may carry 2.5, or NaN.
  if (typeof retryAfter !== 'number' || !Number.isFinite(retryAfter)) return 1;
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(retryAfter)));
}

/**
 * The answer as a KeycardException, for the doors' refusal shaping: its challenge when that is the
 * answer (the 401s), otherwise an {@link ExchangeFailedException} of the answer's status and body.
 */
function asDenial(error: TokenExchangeError | ResourceAccessError, { status, body, challenge }: Answer): KeycardException {
  if (challenge !== undefined && challenge.getStatus() === status) return challenge;
  const { error: code, error_description: description } = body as { error: string; error_description: ConstructorParameters<typeof ExchangeFailedException>[2] };
  return new ExchangeFailedException(status, code, description, challenge, status === HttpStatus.SERVICE_UNAVAILABLE ? retryAfterOf(error) : undefined);
}

/**
 * A microservice call's answer as Nest's RPC filter gives it: an Observable failing with the
 * `RpcException`'s error (gRPC: its status, details and trailers; an mcp-nest tool: its `isError`
 * text); a `@GrpcStreamCall` whose raw call the door has ended settles (as `GrpcStreamCallRefusedFilter` does).
 */
function rpcAnswer(refused: Error | Promise<Error>): Observable<unknown> {
  return defer(async () => {
    const exception = await refused;
    if (exception instanceof GrpcStreamCallRefused) return undefined;
    throw (exception as Error & { getError(): unknown }).getError();
  });
}
