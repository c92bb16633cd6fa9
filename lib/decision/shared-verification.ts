import type { AgentContext } from '../interfaces/agent-context.interface.js';

/**
 * On a request whose calls share it (the fields of one GraphQL operation over HTTP), the
 * verification of its token: later fields take its outcome instead of verifying again (a token's
 * first verification does not enter the verified-token cache), and its refusal is logged once.
 * Verification's own memory of the request, under a symbol no client input can set. Over Express
 * every request has this field from the start (`HttpRequestShape`), so writing it gives the
 * request no new hidden class (issue 24).
 */
export const VERIFYING = Symbol('keycard.verifying');

/** A request's token verification, as its later calls take it. Every field always present: one shape. */
export interface SharedVerification {
  readonly token: string;
  readonly resource: object;
  /** The agent, or its promise while the zone's keys are fetched; undefined when it failed at once. */
  readonly agent: AgentContext | Promise<AgentContext> | undefined;
  /** True when the verification threw at once; {@link error} is what it threw. */
  readonly failed: boolean;
  readonly error: unknown;
}

export type VerifyingHolder = { [VERIFYING]?: SharedVerification };

