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

export function connectionOf(holder: object | undefined): ConnectionState | undefined {
  return (holder as { [CONNECTION]?: ConnectionState } | undefined)?.[CONNECTION];
}

export function setConnection(holder: object, state: ConnectionState): void {
  (holder as { [CONNECTION]?: ConnectionState })[CONNECTION] = state;
}
