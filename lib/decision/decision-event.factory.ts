import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { DenialReason } from '../resource-server/keycard.exceptions.js';
import type { Call } from './call.js';
import type { DecisionEvent, DecisionType } from './decision-events.js';
import { reasonOfCode } from './decision-reason.js';

/** What the core knows of an outcome when it publishes it. */
export interface Outcome {
  /** The HTTP status the answer has or would have had (200 when admitted). */
  readonly status: number;
  /** The denial code of a refusal. */
  readonly detail?: DenialReason;
  /** The verified agent, when there is one (never an unverified token's claims). */
  readonly agent?: AgentContext;
  readonly public?: boolean;
  readonly final: boolean;
}

function typeOf(outcome: Outcome): DecisionType {
  if (outcome.status < 400) return 'admitted';
  return outcome.detail === 'rate_limited' ? 'rate_limited' : 'refused';
}

/** The {@link DecisionEvent} of `call`'s outcome. Built only when someone listens. */
export function decisionEvent(call: Call, outcome: Outcome): DecisionEvent {
  const { agent, detail, status } = outcome;
  const required = call.required ?? call.rules.scopes;
  return {
    type: typeOf(outcome),
    reason: detail === undefined ? undefined : reasonOfCode(detail, status),
    detail,
    status,
    call: { kind: call.kind.name, name: call.describe() },
    performedBy: agent === undefined ? undefined : { issuer: agent.issuer, agentId: agent.agentId, clientId: agent.clientId },
    onBehalfOf: agent?.subject,
    sessionId: agent?.sessionId,
    tokenId: agent?.tokenId,
    resource: call.resource?.id,
    requiredScopes: required,
    missingScopes: detail === 'insufficient_scope' ? missing(agent, required) : undefined,
    public: outcome.public,
    agent,
    context: call.context,
    final: outcome.final,
    source: call,
  };
}

function missing(agent: AgentContext | undefined, required: readonly string[] | undefined): readonly string[] | undefined {
  if (required === undefined) return undefined;
  if (agent === undefined) return required;
  return required.filter((scope) => !agent.scopes.includes(scope));
}
