import { Inject, Injectable } from '@nestjs/common';
import type { ExecutionContext } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import type { DenialReason } from '../resource-server/keycard.exceptions.js';
import type { Call } from './call.js';
import { type DecisionReason, reasonOfCode } from './decision-reason.js';

/**
 * What was decided: `admitted` (a verified agent, or a `@Public()` call with none), `refused`
 * (a challenge or the context's own error), `rate_limited` (the throttler integration's 429).
 * @publicApi
 */
export type DecisionType = 'admitted' | 'refused' | 'rate_limited';

/**
 * One decision of the module, published once to every subscriber ({@link DecisionEvents}). Built
 * only from verified claims: `performedBy`, `onBehalfOf`, `sessionId` and `tokenId` are absent
 * when the token was not verified. Never holds the token.
 * @publicApi
 */
export interface DecisionEvent {
  readonly type: DecisionType;
  /** Why it was refused, in the shared vocabulary (absent when admitted). */
  readonly reason?: DecisionReason;
  /** The precise denial code (`signature_invalid`, `expired`, …), as audit records carry it. */
  readonly detail?: DenialReason;
  /** The HTTP status the answer has or would have had over HTTP: 200, 401, 403, 429, 503, … */
  readonly status: number;
  /** The door (`http`, `graphql`, `ws`, `rpc`, `mcp`) and the call (`GET /orders`, `graphql query Orders.orders`). */
  readonly call: { readonly kind: string; readonly name: string };
  /** The agent: its issuer, stable id and `client_id` (RFC 6749 §2.2: a client id is unique at its issuer only). */
  readonly performedBy?: { readonly issuer: string; readonly agentId: string; readonly clientId: string };
  /** The user (`sub`) the agent acts for. */
  readonly onBehalfOf?: string;
  readonly sessionId?: string;
  readonly tokenId?: string;
  /** The resource identifier that judged the call, when chosen. */
  readonly resource?: string;
  /** The scopes the call requires, when any. */
  readonly requiredScopes?: readonly string[];
  /** Of those, the ones the verified token lacks (for `insufficient_scope`). */
  readonly missingScopes?: readonly string[];
  /** True for a `@Public()` call (admitted without authentication). */
  readonly public?: boolean;
  /** The verified agent, when there is one (the whole {@link AgentContext}). */
  readonly agent?: AgentContext;
  /** The Nest execution context of the call. */
  readonly context: ExecutionContext;
  /**
   * False when another judge of the same call will publish its final outcome (the throttler
   * integration, which may still answer 429 after this admission). Observers that record one
   * line per call wait for the final event.
   */
  readonly final: boolean;
  /** @internal The core's call object, for the module's own observers. */
  readonly source: Call;
}

/** A subscriber: called synchronously with every decision. What it throws is logged and ignored. */
export type DecisionListener = (event: DecisionEvent) => void;

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
  private listeners: readonly DecisionListener[] = [];

  constructor(@Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions) {}

  /** True when at least one subscriber listens (the core builds events only then). */
  get active(): boolean {
    return this.listeners.length > 0;
  }

  /**
   * Adds `listener`; it receives every decision from now on, synchronously, in subscription order.
   * @returns unsubscribes it.
   */
  subscribe(listener: DecisionListener): () => void {
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  /**
   * Publishes the outcome of `call`, when anyone listens (nothing is built otherwise). `final`
   * defaults to true: a call whose later judge rules on it says so.
   */
  decided(call: Call, outcome: Outcome): void {
    // The call is decided: what follows (the door's answer, observers) never needs its token (INV7).
    call.token = undefined;
    if (this.listeners.length > 0) this.publish(eventOf(call, outcome));
  }

  /** Hands `event` to every subscriber; one that throws is logged (by error name only) and skipped. */
  publish(event: DecisionEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.options.logger.error(`A decision event subscriber failed: ${logSafe((error as Error)?.name ?? typeof error)}`);
      }
    }
  }
}

/** What the core knows of an outcome when it publishes it. */
export interface Outcome {
  /** The HTTP status the answer has or would have had (200 when admitted). */
  readonly status: number;
  /** The denial code of a refusal. */
  readonly detail?: DenialReason;
  /** The verified agent, when there is one (never an unverified token's claims). */
  readonly agent?: AgentContext;
  readonly public?: boolean;
  /** False when a later judge (the throttler) publishes the call's final outcome; default true. */
  readonly final?: boolean;
}

function typeOf(outcome: Outcome): DecisionType {
  if (outcome.status < 400) return 'admitted';
  return outcome.detail === 'rate_limited' ? 'rate_limited' : 'refused';
}

/** The {@link DecisionEvent} of `call`'s outcome. Built only when someone listens. */
function eventOf(call: Call, outcome: Outcome): DecisionEvent {
  const { agent, detail, status } = outcome;
  const required = call.requiredScopes;
  const event = new Event(call);
  event.type = typeOf(outcome);
  event.reason = detail === undefined ? undefined : reasonOfCode(detail, status);
  event.detail = detail;
  event.status = status;
  event.call = { kind: call.kind.name, name: call.describe() };
  event.performedBy = agent === undefined ? undefined : { issuer: agent.issuer, agentId: agent.agentId, clientId: agent.clientId };
  event.onBehalfOf = agent?.subject;
  event.sessionId = agent?.sessionId;
  event.tokenId = agent?.tokenId;
  event.resource = call.resource?.id;
  event.requiredScopes = required;
  event.missingScopes = detail === 'insufficient_scope' ? missing(agent, required) : undefined;
  event.public = outcome.public;
  event.agent = agent;
  event.final = outcome.final ?? true;
  return event;
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * A {@link DecisionEvent}. `context` and `source` are references, not data: getters on the class,
 * so printing or serialising an event leaves them out (the request behind the context holds the
 * Authorization header), without the cost of defining non-enumerable properties on each event.
 */
class Event implements Writable<Omit<DecisionEvent, 'context' | 'source'>> {
  type!: DecisionType;
  reason?: DecisionReason;
  detail?: DenialReason;
  status!: number;
  call!: { readonly kind: string; readonly name: string };
  performedBy?: { readonly issuer: string; readonly agentId: string; readonly clientId: string };
  onBehalfOf?: string;
  sessionId?: string;
  tokenId?: string;
  resource?: string;
  requiredScopes?: readonly string[];
  missingScopes?: readonly string[];
  public?: boolean;
  agent?: AgentContext;
  final!: boolean;
  readonly #source: Call;

  constructor(source: Call) {
    this.#source = source;
  }

  get context(): ExecutionContext {
    return this.#source.context;
  }

  get source(): Call {
    return this.#source;
  }
}

function missing(agent: AgentContext | undefined, required: readonly string[] | undefined): readonly string[] | undefined {
  if (required === undefined) return undefined;
  if (agent === undefined) return required;
  return required.filter((scope) => !agent.scopes.includes(scope));
}
