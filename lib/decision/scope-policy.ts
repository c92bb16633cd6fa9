import type { AgentContext } from '../interfaces/agent-context.interface.js';
import {
  InsufficientPermissionException, InsufficientScopeException, InsufficientUserAuthenticationException, type KeycardException,
} from '../resource-server/keycard.exceptions.js';
import type { Call } from './call.js';
import type { Judge } from './judge.js';
import type { StepUp } from './policy/authentication-check.js';
import type { Shortfall } from './policy/requirement.js';

/**
 * The authorization policy evaluated after verification (STYLE 25; INV5: only a fully valid token
 * is judged): the handler's requirement, compiled once at bootstrap into its {@link RouteRules}
 * (scope paths through the scope hierarchy, argument-dependent scopes, claims, the delegation
 * chain, RFC 9470 authentication strength), plus, on an MCP endpoint, the requirement of the tool
 * the body calls (`call.operation`). Every shortfall of one call becomes one refusal naming all it needs (catalogue
 * T9, T19, T22, T26). The call's {@link Judge} (`hasScopes`, an app's guard hook) is asked last,
 * with the token scopes that satisfied the requirement.
 */
export class ScopePolicy {
  /**
   * The refusal of `call` for `agent`, or `undefined` when it is admitted; `call.required` is then
   * what the call required.
   * @throws InvalidTokenException for a malformed `acr` / `auth_time` on a step-up route;
   *   PolicyFailedException (500) when an argument-dependent requirement fails.
   */
  unmet(call: Call, agent: AgentContext, judge: Judge): KeycardException | undefined {
    const { requirement, mcp } = call.rules;
    if (mcp !== undefined) return this.unmetOnMcp(call, agent, judge);
    if (requirement === undefined) return undefined;
    const shortfall = requirement.assess(agent, call, judge);
    return shortfall === undefined ? undefined : refusalOf(shortfall);
  }

  /** An MCP endpoint's requirement and the called tool's (scopes, then its arguments'), in one refusal (T10, T26). */
  private unmetOnMcp(call: Call, agent: AgentContext, judge: Judge): KeycardException | undefined {
    const endpoint = call.rules.requirement;
    const tool = call.operation; // the tool the body calls, found once per call by the MCP layer
    const toolRequirement = tool === undefined || tool.isPublic ? undefined : tool.requirement;
    const first = endpoint?.assess(agent, call, judge);
    const endpointScopes = call.required ?? [];
    const second = toolRequirement?.assess(agent, call, judge);
    const toolScopes = toolRequirement === undefined ? [] : (call.required ?? []);
    const scopes = toolScopes.length === 0 ? endpointScopes : [...new Set([...endpointScopes, ...toolScopes])];
    call.required = scopes.length > 0 ? scopes : undefined;
    if (first === undefined && second === undefined) return undefined;
    return refusalOf({
      scopes,
      scopeMissing: first?.scopeMissing === true || second?.scopeMissing === true,
      permissionMissing: first?.permissionMissing === true || second?.permissionMissing === true,
      stepUp: first?.stepUp === undefined || second?.stepUp === undefined ? (first?.stepUp ?? second?.stepUp) : bothStepUps(first.stepUp, second.stepUp),
    });
  }
}

/** Two step-ups in one challenge: the endpoint's `acr_values` first, the shorter `max_age`. */
function bothStepUps(first: StepUp, second: StepUp): StepUp {
  const ages = [first.maxAge, second.maxAge].filter((age) => age !== undefined);
  return { acrValues: first.acrValues ?? second.acrValues, maxAge: ages.length > 0 ? Math.min(...ages) : undefined };
}

/**
 * The one refusal of a shortfall (Q27, Q28): a step-up (401, naming the scopes too) before a
 * missing scope (403 naming them), before a failed claim or delegation predicate (403 without scope).
 */
function refusalOf(shortfall: Shortfall): KeycardException {
  if (shortfall.stepUp !== undefined) return new InsufficientUserAuthenticationException(shortfall.stepUp, shortfall.scopes);
  if (shortfall.scopeMissing) return new InsufficientScopeException(shortfall.scopes);
  return new InsufficientPermissionException();
}
