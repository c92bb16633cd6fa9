import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { DenialReason } from './keycard.exceptions.js';

/**
 * What the module remembers about a refused or audited request, under a symbol no client input
 * can set: why it was refused and by which agent (for the audit line), and whether the audit line is
 * already arranged. Successful requests without audit allocate nothing here.
 */
interface RequestState {
  denial?: DenialReason;
  /** The verified agent of a request refused for its scopes (it never reaches `request.user`). */
  agent?: AgentContext;
  audited?: boolean;
  /** A denial line was written for this request (one per request where calls share it). */
  denialLogged?: boolean;
  /**
   * Every scope the challenge of the request's one response names so far, where several calls
   * share it (the fields of a GraphQL operation): the challenge names them all.
   */
  challengeScopes?: Set<string>;
  /** The refusal limiter's answer for the request, counted once where several calls share it (GraphQL fields). */
  limited?: Promise<unknown>;
  /** The calls refused in the request where several share it (GraphQL fields), for its audit line. */
  refused?: Set<string>;
}

const STATE = Symbol('keycard.request-state');

/**
 * The state of carriers that cannot take a field: an app's own non-extensible object (a frozen
 * request copy its GraphQL context hands resolvers). Kept beside them, so their refusals are still
 * logged once and audited, never a `TypeError` answered as an internal error.
 */
const beside = new WeakMap<object, RequestState>();

type StateHolder = { [STATE]?: RequestState };

/** The request's state if it has any, without creating it (for the paths that must not allocate). */
export function peekRequestState(request: object): RequestState | undefined {
  return (request as StateHolder)[STATE] ?? (Object.isExtensible(request) ? undefined : beside.get(request));
}

export function requestState(request: object): RequestState {
  const holder = request as StateHolder;
  const own = holder[STATE];
  if (own !== undefined) return own;
  if (Object.isExtensible(request)) return (holder[STATE] = {});
  let state = beside.get(request);
  if (state === undefined) beside.set(request, (state = {}));
  return state;
}
