import { Inject, Injectable } from '@nestjs/common';
import type { ExecutionContext } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import type { TraceContextSource } from '../logging/trace-context.js';
import type { DenialReason } from '../resource-server/keycard.exceptions.js';
import type { Call } from './call.js';
import { type DecidedCall, eventOf, openingCallOf, traceIdOfHeaders } from './decision-event-build.js';
import type { ExchangedEvent, PerformedBy, RevocationAppliedEvent, RevocationMatch } from './decision-event-kinds.js';
import type { DecisionReason } from './decision-reason.js';

export { refusalOutcome } from './decision-event-build.js';

export type { DecidedCall } from './decision-event-build.js';
export type { ExchangedEvent, PerformedBy, RevocationAppliedEvent, RevocationMatch } from './decision-event-kinds.js';

/**
 * What was decided about a call (catalogue W2): `admitted` (a verified agent, or a `@Public()` call
 * with none); `refused` (a challenge, a transport refusal, or the context's own error);
 * `step_up_required` (RFC 9470: the user must sign in again, more strongly or more recently);
 * `revoked` (the token matched the revocation list); `rate_limited` (the throttler integration's 429).
 * @publicApi
 */
export type DecisionType = 'admitted' | 'refused' | 'step_up_required' | 'revoked' | 'rate_limited';

/** What the user must do again, and what the token showed (RFC 9470 §3, §6.1), on a `step_up_required` decision. @publicApi */
export interface StepUpEvidence {
  /** The acceptable `acr` values, space-separated, in order of preference (the challenge's `acr_values`). */
  readonly acrValues?: string;
  /** The largest accepted age of the authentication, in seconds (the challenge's `max_age`). */
  readonly maxAge?: number;
  /** The token's `acr`, when a string. */
  readonly acr?: string;
  /** The token's `auth_time` (seconds since the epoch), when a number. */
  readonly authTime?: number;
}

/**
 * One decision of the module, published once to every subscriber ({@link DecisionEvents}). Built
 * only from verified claims: `performedBy`, `onBehalfOf`, `sessionId` and `tokenId` are absent
 * when the token was not verified (catalogue W2). Never holds the token.
 *
 * Shape (catalogue W1; the audit record, version 2, carries the same fields):
 * `{ type, reason?, detail?, status, call: { kind, name, method, route, carrier? }, performedBy?:
 * { issuer, agentId, clientId }, onBehalfOf?, sessionId?, tokenId?, resource?, requiredScopes?,
 * missingScopes?, stepUp?, matchedBy?, traceId?, spanId?, public?, final }`.
 * @publicApi
 */
export interface DecisionEvent {
  readonly type: DecisionType;
  /** Why it was refused, in the shared vocabulary (absent when admitted). */
  readonly reason?: DecisionReason;
  /**
   * The precise code (`signature_invalid`, `expired`, `forbidden_origin`, …), as audit records carry it as `reason`;
   * on an admission, why it was served without an agent (`zone_unavailable`: an `@OptionalAuth()` call in a zone outage).
   */
  readonly detail?: string;
  /** The HTTP status the answer has or would have had over HTTP: 200 (101 for a connection opened), 401, 403, 429, 503, … */
  readonly status: number;
  /** The door and the call (`http`, `GET`, `/orders/:id`). */
  readonly call: DecidedCall;
  /** The agent: its issuer, stable id and `client_id`. Only from a verified token. */
  readonly performedBy?: PerformedBy;
  /** The user (`sub`) the agent acts for. */
  readonly onBehalfOf?: string;
  /** `sid`: the user's session at the zone; a step-up and the call it unlocks share it (catalogue W3). */
  readonly sessionId?: string;
  /** `jti`. */
  readonly tokenId?: string;
  /** The resource identifier that judged the call, when chosen. */
  readonly resource?: string;
  /** The scopes the call requires, when any. */
  readonly requiredScopes?: readonly string[];
  /** Of those, the ones the verified token lacks (for `insufficient_scope`). */
  readonly missingScopes?: readonly string[];
  /** For `step_up_required`: what the challenge asks for and what the token showed. */
  readonly stepUp?: StepUpEvidence;
  /** For `revoked`: the revocation-list entry that matched (the `entry` of its `revocation_applied` event). */
  readonly matchedBy?: RevocationMatch;
  /**
   * W3C trace id (32 hex) of the span active when the call was decided (with
   * `nestjs-keycard/telemetry`), else of the request's `traceparent` header: the correlation id.
   */
  readonly traceId?: string;
  /** The span id of that active span, when there is one. */
  readonly spanId?: string;
  /** True for a `@Public()` call (admitted without authentication). */
  readonly public?: boolean;
  /** The verified agent, when there is one (the whole {@link AgentContext}). */
  readonly agent?: AgentContext;
  /**
   * The Nest execution context of the call; absent for a decision taken before there is one (a
   * WebSocket, socket.io or graphql-ws connection judged as it opens: see `call.carrier`).
   */
  readonly context?: ExecutionContext;
  /**
   * False when another judge of the same call will publish its final outcome (the throttler
   * integration, which may still answer 429 after this admission). Observers that record one
   * line per call wait for the final event.
   */
  readonly final: boolean;
  /** @internal The core's call object, for the module's own observers; absent where {@link context} is. */
  readonly source?: Call;
  /** @internal `performance.now()` when the decision began (0 when unknown), for durations. */
  readonly started: number;
  /** @internal The `traceparent` header a connection opened with, for a tracer to continue (a call's is on its request). */
  readonly traceparent?: string;
}

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
    // The call is decided: what follows (the door's answer, observers) never needs its token (INV7).
    call.token = undefined;
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

/** What the core knows of an outcome when it publishes it. */
export interface Outcome {
  /** The HTTP status the answer has or would have had (200 when admitted). */
  readonly status: number;
  /**
   * The denial code of a refusal (a {@link DenialReason}, or a transport refusal's: `forbidden_origin`, `header_mismatch`);
   * of an admission without an agent, why (`zone_unavailable`).
   */
  readonly detail?: DenialReason | 'forbidden_origin' | 'header_mismatch';
  /** The verified agent, when there is one (never an unverified token's claims). */
  readonly agent?: AgentContext;
  readonly public?: boolean;
  /** False when a later judge (the throttler) publishes the call's final outcome; default true. */
  readonly final?: boolean;
  /** For a step-up refusal: the challenge's `acr_values` and `max_age`. */
  readonly stepUp?: { readonly acrValues?: string; readonly maxAge?: number };
  /** For a revoked token: the entry that matched. */
  readonly matchedBy?: RevocationMatch;
  /** For a connection judged as it opens: `performance.now()` when its verification began. */
  readonly started?: number;
}

