import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { Call } from './call.js';
import type { Judge } from './judge.js';

/**
 * The authorization policy evaluated after verification (STYLE 25; INV5: only a fully valid token
 * is judged for scopes): the scopes the route requires — compiled once at bootstrap into its
 * {@link RouteRules} — plus, on an endpoint that serves several operations (MCP), those of the operation the body calls. Judged with
 * the call's {@link Judge} (`hasScopes`: all of them, exact match, unless an app's guard says otherwise).
 */
export class ScopePolicy {
  /** The scopes `call` requires, or `undefined` when none are. */
  required(call: Call): readonly string[] | undefined {
    return call.operation === undefined ? call.rules.scopes : call.operation.scopes;
  }

  /** The required scopes `agent` does not satisfy, or `undefined` when it is admitted. */
  unmet(call: Call, agent: AgentContext, judge: Judge): readonly string[] | undefined {
    const scopes = this.required(call);
    call.required = scopes;
    return scopes === undefined || judge.hasScopes(agent, scopes) ? undefined : scopes;
  }
}

