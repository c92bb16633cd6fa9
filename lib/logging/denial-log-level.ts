import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardLogger } from '../keycard-options.js';
import { logSafe } from './log-safe.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';

/** Refusals whose cause is logged as an error once per interval where it is found. */
const ONCE_PER_INTERVAL_ELSEWHERE = new Set<string>(['zone_misconfigured', 'resource_unconfigured']);

/**
 * The level a refusal is logged at: routine ones (no credentials) at debug; a misconfigured zone
 * or a missing `resource` at debug too, because the zone services and the resource resolver log
 * them as an error once per interval, not once per request; other server-side failures as errors;
 * the client's mistakes as warnings.
 */
export function denialLogLevel(denial: KeycardException): 'debug' | 'warn' | 'error' {
  if (ONCE_PER_INTERVAL_ELSEWHERE.has(denial.code) || denial.code === 'no_credentials') return 'debug';
  return denial.getStatus() >= 500 ? 'error' : 'warn';
}

/**
 * The line a refusal is logged with: `denied <call> status=<n> reason=<code>` and the agent when
 * known, never the token. The call and the claims are the client's words: escaped and capped
 * ({@link logSafe}), so they cannot add a line or drive the terminal (CWE-117).
 */
export function denialLine(call: string, denial: KeycardException, agent?: AgentContext): string {
  const who = agent ? ` agent=${logSafe(agent.clientId)} user=${logSafe(agent.subject)} jti=${logSafe(agent.tokenId)}` : '';
  return `denied ${logSafe(call)} status=${denial.getStatus()} reason=${denial.code}${who}`;
}

/** Writes `line` at `level` ({@link denialLogLevel}); a logger without `debug` drops debug lines. */
export function logAtLevel(logger: KeycardLogger, level: 'debug' | 'warn' | 'error', line: string): void {
  if (level === 'debug') logger.debug?.(line);
  else logger[level](line);
}
