import { Inject, Injectable } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { LOG_MESSAGE_MAX_LENGTH, logSafe } from '../logging/log-safe.js';
import { ONCE_PER_INTERVAL_NOTE, OncePerInterval } from '../logging/once-per-interval.js';
import { ResourceAccessError } from './access-context.js';
import type { TokenExchangeError } from './token-exchange.error.js';

/** One failed exchange as the filter answered it. */
export interface AnsweredFailure {
  readonly error: TokenExchangeError | ResourceAccessError;
  /** The HTTP status the call was answered with (or its door's equivalent). */
  readonly status: number;
  /** The call's door and carrier, outside HTTP: the fields of one GraphQL request share a line. */
  readonly kind?: CallKind;
  readonly carrier?: Carrier;
}

/**
 * How a handler's failed token exchange is logged (`TokenExchangeExceptionFilter`): a 5xx answer
 * is an error line naming the failure, never a token. A 500 says this service is misconfigured
 * (its credentials, target or scope refused by the zone; an option missing): that line is written
 * once per interval and reason, however many calls meet it, as the zone services log their
 * configuration errors, so no caller can flood the log with it. A zone that is down or answers
 * badly (502, 503, 504) is logged per call: each is an outage the operator may want to count. The
 * fields of one GraphQL operation share one line, as the guard's refusals do.
 */
@Injectable()
export class ExchangeFailureLog {
  /** One gate per reason of a 500: the reasons are a fixed set (kinds, configuration codes), never the zone's words. */
  private readonly misconfigured = new Map<string, OncePerInterval>();
  /** GraphQL requests whose failed exchange was logged. */
  private readonly loggedRequests = new WeakSet<Carrier>();

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {}

  /** Logs `failure` when its answer is a 5xx and the policy above says so. */
  answered(failure: AnsweredFailure): void {
    const { error, status } = failure;
    if (status < 500 || !this.firstInRequest(failure)) return;
    const why = reasonOf(error);
    const line = `Token exchange failed (${why}): ${logSafe(error.message, LOG_MESSAGE_MAX_LENGTH)}; answered ${status}`;
    if (status !== 500) {
      this.options.logger.error(line);
      return;
    }
    let gate = this.misconfigured.get(why);
    if (gate === undefined) this.misconfigured.set(why, (gate = new OncePerInterval(this.clock)));
    if (gate.due()) this.options.logger.error(`${line} (${ONCE_PER_INTERVAL_NOTE})`);
  }

  /**
   * Whether this call is the first of its request to fail: the fields of one GraphQL operation
   * share one line (200 aliases failing their grant are one failed request, not 200 lines). Every
   * other call (an HTTP route, a message, a gRPC call) is its own.
   */
  private firstInRequest({ kind, carrier }: AnsweredFailure): boolean {
    if (kind === undefined || carrier === undefined || !kind.sharedCarrier || kind.isConnection(carrier)) return true;
    if (this.loggedRequests.has(carrier)) return false;
    this.loggedRequests.add(carrier);
    return true;
  }
}

/**
 * The failure's reason, from fixed words only: the grant's reason and the exchange's kind, and the
 * zone's OAuth `error` only when it is one of the configuration codes the filter answers 500 for.
 */
function reasonOf(error: TokenExchangeError | ResourceAccessError): string {
  if (error instanceof ResourceAccessError) return `${error.reason}, ${error.cause === undefined ? 'no exchange' : reasonOf(error.cause)}`;
  return error.kind === 'oauth' && error.code !== undefined && CONFIGURATION_CODES.has(error.code) ? `oauth ${error.code}` : error.kind;
}

/** OAuth errors that mean this service (not the caller) is misconfigured at the zone (I15, I16). */
export const CONFIGURATION_CODES: ReadonlySet<string> = new Set(['invalid_client', 'invalid_target', 'invalid_scope', 'unauthorized_client', 'unsupported_grant_type']);
