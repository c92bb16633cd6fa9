import type { KeycardLogger } from '../keycard-options.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { denialLine, denialLogLevel, logAtLevel } from '../logging/denial-log-level.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';

/**
 * The hooks a call is judged with: the guard that asked (an app's `KeycardGuard` subclass
 * overrides `hasScopes` / `logDenial`), or the defaults when another guard (the throttler
 * integration) asks the core directly. A judge running after another in the same call judges the
 * earlier admission again with its own hooks, so a stricter subclass is never skipped.
 */
export interface Judge {
  /** True when `agent` holds what `required` asks. */
  hasScopes(agent: AgentContext, required: readonly string[]): boolean;
  /** Logs a refusal (`call` names it); never the token. */
  logDenial(call: string, denial: KeycardException, agent: AgentContext | undefined): void;
}

/** All-of, exact and case-sensitive match (catalogue D1–D9). */
export function holdsAllScopes(agent: AgentContext, required: readonly string[]): boolean {
  // A loop rather than `every` with a closure: asked on every admitted call (issue 24).
  const { scopes } = agent;
  for (let i = 0; i < required.length; i++) if (!scopes.includes(required[i])) return false;
  return true;
}

/**
 * Logs a refusal with its reason, the call and the agent when known; never the token. The call
 * and the claims are the client's words: escaped and capped (`logSafe`), so they cannot add a
 * line or drive the terminal (CWE-117). Routine ones at debug level (see {@link denialLogLevel}).
 */
export function logRefusal(logger: KeycardLogger, refusal: { call: string; denial: KeycardException; agent: AgentContext | undefined }): void {
  const { call, denial, agent } = refusal;
  logAtLevel(logger, denialLogLevel(denial), denialLine(call, denial, agent));
}

/** The judge with the default hooks (the core's own, for guards other than `KeycardGuard`). */
export function defaultJudge(logger: KeycardLogger): Judge {
  return {
    hasScopes: holdsAllScopes,
    logDenial: (call, denial, agent) => logRefusal(logger, { call, denial, agent }),
  };
}
