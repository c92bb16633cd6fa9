import type { AgentContext } from '../interfaces/agent-context.interface.js';
import {
  InsufficientPermissionException, InsufficientScopeException, InsufficientUserAuthenticationException, type KeycardException,
} from '../resource-server/keycard.exceptions.js';
import type { Call } from './call.js';
import type { Judge } from './judge.js';
import { Verdict } from './policy/verdict.js';

/**
 * The authorization policy evaluated after verification (STYLE 25; INV5: only a fully valid token
 * is judged), once per call: the handler's requirement, compiled at bootstrap into its
 * {@link RouteRules} (scope paths through the scope hierarchy, argument-dependent scopes, claims,
 * the delegation chain, RFC 9470 authentication strength), plus, on an MCP endpoint, the
 * requirement of the tool the body calls (`call.operation`). Both gather in one {@link Verdict},
 * so one refusal names all the call needs (catalogue T9, T19, T22, T26). The call's
 * {@link Judge} (`hasScopes`, an app's guard hook) is asked last, with the token scopes that
 * satisfied the requirement.
 */
export class AuthorizationPolicy {
  /** Judging is synchronous, so one verdict serves every call in turn. */
  private readonly verdict = new Verdict();

  /**
   * The refusal of `call` for `agent`, or `undefined` when it is admitted; `call.required` is then
   * what the call required.
   * @throws InvalidTokenException for a malformed `acr` / `auth_time` on a step-up route;
   *   PolicyFailedException (500) when an argument-dependent requirement fails.
   */
  unmet(call: Call, agent: AgentContext, judge: Judge): KeycardException | undefined {
    const tool = call.operation; // on an MCP endpoint, the tool the body calls
    const toolRequirement = tool === undefined || tool.isPublic ? undefined : tool.requirement;
    const { requirement } = call.rules;
    if (requirement === undefined && toolRequirement === undefined) return undefined;
    const verdict = this.verdict.reset();
    requirement?.assess(agent, call, verdict);
    toolRequirement?.assess(agent, call, verdict);
    // Only `true` admits: a hook written async answers a Promise, truthy even when it resolves false.
    if (verdict.held && verdict.needed.length > 0) verdict.held = judge.hasScopes(agent, verdict.grants) === true;
    call.required = verdict.needed.length > 0 ? verdict.needed : undefined;
    return verdict.met ? undefined : refusalOf(verdict);
  }
}

/**
 * The one refusal of a verdict (Q27, Q28): a step-up (401, naming the scopes too) before a
 * missing scope (403 naming them), before a failed claim or delegation predicate (403 without scope).
 */
function refusalOf(verdict: Verdict): KeycardException {
  if (verdict.stepUp !== undefined) return new InsufficientUserAuthenticationException(verdict.stepUp, verdict.needed);
  if (!verdict.held) return new InsufficientScopeException(verdict.needed);
  return new InsufficientPermissionException();
}
