import type { ExecutionContext } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { TraceIds } from '../logging/trace-context.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import type { Call } from './call.js';
import { type DecidedCall, decidedCallOf, traceOfRequest } from './decision-event-call.js';
import { matchedByOf, type PerformedBy, type RevocationMatch } from './decision-event-kinds.js';
import type { DecisionEvent, DecisionType, Outcome, StepUpEvidence } from './decision-events.js';
import { type DecisionReason, reasonOfCode } from './decision-reason.js';

/* How a {@link DecisionEvent} is built from what the core knows: only when someone listens. */

/**
 * The {@link Outcome} of a refusal: its status and code, the agent when one was verified, and what
 * a step-up asks for or the revocation entry that matched.
 */
export function refusalOutcome(denial: KeycardException, agent: AgentContext | undefined): Outcome {
  const outcome = { status: denial.getStatus(), detail: denial.code, agent };
  if (denial.code === 'insufficient_user_authentication') {
    const params = denial.challengeParams();
    const maxAge = params?.max_age === undefined ? undefined : Number(params.max_age);
    return { ...outcome, stepUp: { ...(params?.acr_values === undefined ? {} : { acrValues: params.acr_values }), ...(maxAge === undefined ? {} : { maxAge }) } };
  }
  const matchedBy = denial.code === 'revoked' ? matchedByOf(denial) : undefined;
  return matchedBy === undefined ? outcome : { ...outcome, matchedBy };
}

function typeOf(outcome: Outcome): DecisionType {
  if (outcome.status < 400) return 'admitted';
  switch (outcome.detail) {
    case 'rate_limited':
      return 'rate_limited';
    case 'insufficient_user_authentication':
      return 'step_up_required';
    case 'revoked':
      return 'revoked';
    default:
      return 'refused';
  }
}

/**
 * The {@link DecisionEvent} of `call`'s outcome (or of a connection opening, `call` absent). Built
 * only when someone listens. `trace`: the span active now, when a tracer is registered; without
 * one, a call's event names the `traceparent` of its HTTP request.
 */
export function eventOf(call: Call | undefined, outcome: Outcome & { call?: DecidedCall }, trace: TraceIds | undefined): DecisionEvent {
  const { agent, detail, status } = outcome;
  const required = call?.requiredScopes;
  const event = new Event(call, outcome.started);
  event.type = typeOf(outcome);
  if (detail !== undefined) {
    event.reason = detail === 'forbidden_origin' || detail === 'header_mismatch' ? 'invalid_request' : reasonOfCode(detail, status);
    event.detail = detail;
  }
  event.status = status;
  if (agent !== undefined) {
    event.performedBy = { issuer: agent.issuer, agentId: agent.agentId, clientId: agent.clientId };
    event.onBehalfOf = agent.subject;
    event.sessionId = agent.sessionId;
    event.tokenId = agent.tokenId;
    event.agent = agent;
  }
  event.resource = call?.resource?.id;
  event.requiredScopes = required;
  if (detail === 'insufficient_scope') event.missingScopes = missing(agent, required);
  if (outcome.stepUp !== undefined) event.stepUp = stepUpOf(outcome.stepUp, agent);
  if (outcome.matchedBy !== undefined) event.matchedBy = outcome.matchedBy;
  if (outcome.public !== undefined) event.public = outcome.public;
  event.final = outcome.final ?? true;
  // What the call is and which trace it belongs to, both read from the call's own door.
  event.call = outcome.call ?? decidedCallOf(call!);
  const ids = trace ?? (call === undefined ? undefined : traceOfRequest(call));
  if (ids !== undefined) {
    event.traceId = ids.traceId;
    if (ids.spanId !== '') event.spanId = ids.spanId;
  }
  return event;
}

function stepUpOf(asked: NonNullable<Outcome['stepUp']>, agent: AgentContext | undefined): StepUpEvidence {
  const acr = agent?.claims.acr;
  const authTime = agent?.claims.auth_time;
  return {
    ...asked,
    ...(typeof acr === 'string' ? { acr } : {}),
    ...(typeof authTime === 'number' ? { authTime } : {}),
  };
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * A {@link DecisionEvent}. `context` and `source` are references, not data: getters on the class,
 * so printing or serialising an event leaves them out (the request behind the context holds the
 * Authorization header), without the cost of defining non-enumerable properties on each event.
 */
class Event implements Writable<Omit<DecisionEvent, 'context' | 'source' | 'started'>> {
  type!: DecisionType;
  reason?: DecisionReason;
  detail?: string;
  status!: number;
  call!: DecidedCall;
  performedBy?: PerformedBy;
  onBehalfOf?: string;
  sessionId?: string;
  tokenId?: string;
  resource?: string;
  requiredScopes?: readonly string[];
  missingScopes?: readonly string[];
  stepUp?: StepUpEvidence;
  matchedBy?: RevocationMatch;
  traceId?: string;
  spanId?: string;
  public?: boolean;
  agent?: AgentContext;
  final!: boolean;
  readonly #source: Call | undefined;
  readonly #started: number;

  constructor(source: Call | undefined, started = 0) {
    this.#source = source;
    this.#started = source?.started ?? started;
  }

  /** `performance.now()` when the decision began; 0 when unknown. */
  get started(): number {
    return this.#started;
  }

  get context(): ExecutionContext | undefined {
    return this.#source?.context;
  }

  get source(): Call | undefined {
    return this.#source;
  }
}

function missing(agent: AgentContext | undefined, required: readonly string[] | undefined): readonly string[] | undefined {
  if (required === undefined) return undefined;
  if (agent === undefined) return required;
  return required.filter((scope) => !agent.scopes.includes(scope));
}
