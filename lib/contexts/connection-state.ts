import type { IncomingMessage } from 'node:http';
import type { AgentContext } from '../interfaces/agent-context.interface.js';

/**
 * What the connection hooks learnt when a WebSocket or graphql-ws connection opened, kept under a
 * symbol no client input can set: the verified agent (none for an anonymous connection, see
 * `allowAnonymous`) and the upgrade request. Its presence says Keycard opened the connection.
 */
export interface ConnectionState {
  readonly agent?: AgentContext;
  readonly request?: IncomingMessage;
}

const CONNECTION = Symbol('keycard.connection');

/**
 * The token each connection's agent was verified from, for `@Grant()` on its messages (the subject
 * token of their exchanges). Outside the state object on purpose: `util.inspect` prints symbol-keyed
 * properties, so a socket or context an app logs would show it (INV7).
 */
const VERIFIED_TOKENS = new WeakMap<ConnectionState, string>();

/** The state of a connection opened with `agent`, verified from `token`. */
export function openedConnection(agent: AgentContext, token: string, request?: IncomingMessage): ConnectionState {
  const state: ConnectionState = { agent, request };
  VERIFIED_TOKENS.set(state, token);
  return state;
}

/** The token the connection's agent was verified from. */
export function verifiedTokenOf(state: ConnectionState): string | undefined {
  return VERIFIED_TOKENS.get(state);
}

export function connectionOf(holder: object | undefined): ConnectionState | undefined {
  return (holder as { [CONNECTION]?: ConnectionState } | undefined)?.[CONNECTION];
}

export function setConnection(holder: object, state: ConnectionState): void {
  (holder as { [CONNECTION]?: ConnectionState })[CONNECTION] = state;
}

/** True when the connection hooks opened the connection `holder` belongs to without any token (`allowAnonymous`). */
export function openedAnonymously(holder: object | undefined): boolean {
  const state = connectionOf(holder);
  return state !== undefined && state.agent === undefined;
}
