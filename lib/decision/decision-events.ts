import { Inject, Injectable } from '@nestjs/common';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import type { TraceContextSource } from '../logging/trace-context.js';
import type { Call } from './call.js';
import { type DecisionEvent, eventOf, openingCallOf, type Outcome, traceIdOfHeaders } from './decision-event.js';
import type { ExchangedEvent, RevocationAppliedEvent } from './decision-event-kinds.js';

// The publisher's API names the events it carries: importers of `DecisionEvents` find them here too.
export { refusalOutcome } from './decision-event.js';
export type { DecidedCall, DecisionEvent, DecisionType, Outcome, StepUpEvidence } from './decision-event.js';
export type { ExchangedEvent, PerformedBy, RevocationAppliedEvent, RevocationMatch } from './decision-event-kinds.js';

/**
 * Every event of the module ({@link DecisionEvents.observe}): the decisions about calls, and what
 * happens beside them — an entry applied to the revocation list, a token obtained for a call.
 * Tell them apart by `type`.
 * @publicApi
 */
export type KeycardEvent = DecisionEvent | RevocationAppliedEvent | ExchangedEvent;

/** A subscriber: called synchronously with every decision. What it throws is logged and ignored. */
export type DecisionListener = (event: DecisionEvent) => void;
/** An observer of every {@link KeycardEvent}. What it throws is logged and ignored. */
export type KeycardEventListener = (event: KeycardEvent) => void;

/** A registered listener, and whether it takes every event or decisions only. */
interface Registration {
  readonly listener: KeycardEventListener;
  readonly all: boolean;
}

/**
 * The decision events of the module (STYLE 26, in the spirit of ASP.NET Core's `JwtBearerEvents`):
 * the audit log, the throttler integration and the app's own observers subscribe; none of them
 * reaches into the guard, and none can change a decision — a subscriber that throws is logged and
 * the others still run (catalogue W12). With no subscriber, nothing is built per call.
 *
 * @example
 * ```ts
 * constructor(events: DecisionEvents) {
 *   events.subscribe((event) => {
 *     if (event.type === 'refused') metrics.increment(event.reason);
 *   });
 * }
 * ```
 * @publicApi
 */
@Injectable()
export class DecisionEvents {
  private registrations: readonly Registration[] = [];
  /** The tracer's view of the active span (`nestjs-keycard/telemetry` registers it: it subscribes here, so it is not injected). */
  private traces?: TraceContextSource;

  constructor(@Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions) {}

  /**
   * Events name the span active when they are decided (`traceId`, `spanId`) through `source`;
   * without one, the `traceparent` header of the call's HTTP request.
   * @internal
   */
  traceWith(source: TraceContextSource | undefined): void {
    this.traces = source;
  }

  /** True when at least one subscriber listens (the core builds events only then). */
  get active(): boolean {
    return this.registrations.length > 0;
  }

  /**
   * Adds `listener`; it receives every decision (calls, and connections as they open) from now on,
   * synchronously, in subscription order.
   * @returns unsubscribes it.
   */
  subscribe(listener: DecisionListener): () => void {
    return this.register({ listener: listener as KeycardEventListener, all: false });
  }

  /**
   * Adds `listener` for every {@link KeycardEvent}: the decisions, `revocation_applied` and
   * `exchanged`, in the order they happen (a `revocation_applied` before the `revoked` decisions it causes).
   * @returns unsubscribes it.
   */
  observe(listener: KeycardEventListener): () => void {
    return this.register({ listener, all: true });
  }

  /**
   * Publishes the outcome of `call`, when anyone listens (nothing is built otherwise). `final`
   * defaults to true: a call whose later judge rules on it says so.
   */
  decided(call: Call, outcome: Outcome): void {
    if (this.registrations.length > 0) this.publish(eventOf(call, outcome, this.traces?.current()));
  }

  /**
   * Publishes the decision on a connection judged as it opens (ws upgrade, socket.io handshake,
   * graphql-ws `connection_init`): `call` as the hooks name it (`socket.io connection`); status
   * 101 with its agent (none when anonymous) when opened, else the refusal's status and code.
   */
  opened(call: string, outcome: Outcome & { readonly traceparent?: string | string[] }): void {
    if (this.registrations.length === 0) return;
    const trace = this.traces?.current();
    const traceId = trace?.traceId ?? traceIdOfHeaders({ traceparent: outcome.traceparent });
    this.publish(eventOf(undefined, { ...outcome, call: openingCallOf(call) }, trace ?? (traceId === undefined ? undefined : { traceId, spanId: '' })));
  }

  /** Hands `event` to every subscriber that takes it; one that throws is logged (by error name only) and skipped. */
  publish(event: KeycardEvent): void {
    const decision = isDecision(event);
    for (const { listener, all } of this.registrations) {
      if (!all && !decision) continue;
      try {
        listener(event);
      } catch (error) {
        this.options.logger.error(`A decision event subscriber failed: ${logSafe((error as Error)?.name ?? typeof error)}`);
      }
    }
  }

  private register(registration: Registration): () => void {
    this.registrations = [...this.registrations, registration];
    return () => {
      this.registrations = this.registrations.filter((r) => r !== registration);
    };
  }
}

/** True for a decision about a call or connection (not `revocation_applied`, not `exchanged`). */
export function isDecision(event: KeycardEvent): event is DecisionEvent {
  return event.type !== 'revocation_applied' && event.type !== 'exchanged';
}
