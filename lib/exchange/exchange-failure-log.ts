import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import { startsRun } from '../contexts/connection-refusal-runs.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { LOG_MESSAGE_MAX_LENGTH, logSafe } from '../logging/log-safe.js';
import { ONCE_PER_INTERVAL_NOTE, OncePerInterval } from '../logging/once-per-interval.js';
import { ResourceAccessError } from './access-context.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import type { TokenExchangeError } from './token-exchange.error.js';
import { WorkloadTokenFileError } from './workload-token-source.js';

/** One failed exchange as the filter answered it. */
export interface AnsweredFailure {
  readonly error: TokenExchangeError | ResourceAccessError;
  /** The HTTP status the call was answered with (or its door's equivalent). */
  readonly status: number;
  /** Outside HTTP: the call's door, context and carrier (its request, or its connection). */
  readonly call?: { readonly kind: CallKind; readonly context: ExecutionContext; readonly carrier: Carrier };
  /** The refusal the door answered (for a connection's run of identical refusals and its summary line). */
  readonly denial?: KeycardException;
}

/**
 * How a handler's failed token exchange is logged (`TokenExchangeExceptionFilter`): a 5xx answer
 * is an error line naming the failure in fixed words, never a token.
 * - This service misconfigured (a 500: its credentials, target or scope refused by the zone, an
 *   option missing; or its workload token file missing, empty or oversized, answered 503): once per
 *   interval and reason, however many calls meet it, as the zone services log their configuration
 *   errors, so no caller can flood the log with it.
 * - A zone that is down or answers badly (502, 503, 504): per request, as the guard logs an outage.
 *   The fields of one GraphQL request share one line per reason; the messages of a connection
 *   (graphql-ws, socket.io, `ws`) log a run of identical failures as the guard's refusals there
 *   (catalogue O5): its first line, then one summary `repeated=<n>`.
 */
@Injectable()
export class ExchangeFailureLog {
  /** One gate per configuration reason: the reasons are fixed words (kinds, configuration codes), never the zone's. */
  private readonly misconfigured = new Map<string, OncePerInterval>();
  /** The reasons logged for each GraphQL request so far. */
  private readonly loggedRequests = new WeakMap<Carrier, Set<string>>();

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {}

  /** Logs `failure` when its answer is a 5xx and the policy above says so. */
  answered(failure: AnsweredFailure): void {
    const { error, status } = failure;
    if (status < 500) return;
    const why = reasonOf(error);
    const line = `Token exchange failed (${why}): ${logSafe(error.message, LOG_MESSAGE_MAX_LENGTH)}; answered ${status}`;
    if (status === 500 || rootOf(error)?.kind === 'config') {
      this.oncePerInterval(why, `${line} (${ONCE_PER_INTERVAL_NOTE})`);
      return;
    }
    if (this.firstOfItsKind(failure, why)) this.options.logger.error(line);
  }

  private oncePerInterval(why: string, line: string): void {
    let gate = this.misconfigured.get(why);
    if (gate === undefined) this.misconfigured.set(why, (gate = new OncePerInterval(this.clock)));
    if (gate.due()) this.options.logger.error(line);
  }

  /**
   * Whether this failure is the first of its reason in its request (the fields of one GraphQL
   * operation: 200 aliases failing their grant are one failed request, not 200 lines), or starts a
   * run on its connection. Every other call (an HTTP route, a gRPC call) is its own.
   */
  private firstOfItsKind({ call, denial }: AnsweredFailure, why: string): boolean {
    if (call === undefined || !call.kind.sharedCarrier && !call.kind.isConnection(call.carrier)) return true;
    const { kind, context, carrier } = call;
    if (kind.isConnection(carrier)) {
      if (denial === undefined) return true;
      const describe = () => describeSafely(call);
      return startsRun({ carrier, handler: kind.part?.(context) ?? describe(), denial, agent: undefined, describe, logger: this.options.logger });
    }
    const logged = this.loggedRequests.get(carrier) ?? new Set<string>();
    if (logged.has(why)) return false;
    this.loggedRequests.set(carrier, logged.add(why));
    return true;
  }
}

/**
 * The call as the guard's lines name it (`mcp Tools.search`, `ws orders:watch`), or its door's
 * name: an exception filter's host may know no class or handler (Nest builds some from the
 * arguments alone), and a log line must never become the failure.
 */
function describeSafely({ kind, context, carrier }: NonNullable<AnsweredFailure['call']>): string {
  try {
    return kind.describe(context, carrier);
  } catch {
    return `${kind.name} call`;
  }
}

/** The exchange failure behind `error` (a grant's error holds it, when there was an exchange). */
function rootOf(error: TokenExchangeError | ResourceAccessError): TokenExchangeError | undefined {
  return error instanceof ResourceAccessError ? error.cause : error;
}

/**
 * The failure's reason, from fixed words only: the grant's reason and the exchange's kind, and the
 * zone's OAuth `error` only when it is one of the configuration codes the filter answers 500 for.
 */
function reasonOf(error: TokenExchangeError | ResourceAccessError): string {
  if (error instanceof ResourceAccessError) return `${error.reason}, ${error.cause === undefined ? 'no exchange' : reasonOf(error.cause)}`;
  if (error instanceof WorkloadTokenFileError) return 'config token_file';
  return error.kind === 'oauth' && error.code !== undefined && CONFIGURATION_CODES.has(error.code) ? `oauth ${error.code}` : error.kind;
}

/** OAuth errors that mean this service (not the caller) is misconfigured at the zone (I15, I16). */
export const CONFIGURATION_CODES: ReadonlySet<string> = new Set(['invalid_client', 'invalid_target', 'invalid_scope', 'unauthorized_client', 'unsupported_grant_type']);
