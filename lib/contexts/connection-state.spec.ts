import { inspect } from 'node:util';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { connectionOf, openedConnection, setConnection, verifiedTokenOf } from './connection-state.js';

describe('connection state', () => {
  it('keeps the verified token for @Grant(), where printing the socket never shows it (INV7)', () => {
    const agent = { clientId: 'agent-1', subject: 'user-1' } as AgentContext;
    const socket = { id: 'socket-1' };
    setConnection(socket, openedConnection(agent, 'header.payload.signature'));
    const state = connectionOf(socket)!;
    expect(state.agent).toBe(agent);
    expect(verifiedTokenOf(state)).toBe('header.payload.signature');
    expect(inspect(socket, { depth: 10, showHidden: true })).not.toContain('signature');
    expect(JSON.stringify(state)).not.toContain('signature');
  });
});
