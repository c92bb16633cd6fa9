import { WsException } from '@nestjs/websockets';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { InsufficientScopeException, InvalidTokenException, PolicyFailedException } from '../resource-server/keycard.exceptions.js';
import { handshakeToken, refuseMessage } from './ws.context.js';

/** What the cuts in a refused message's cost (catalogue O5) must leave as it was. */
describe('a refusal, made cheaper (O5)', () => {
  it('O5 a 4xx refusal captures no stack, a 5xx keeps its own; the message is Nest’s, from the class name; Error.stackTraceLimit is restored', () => {
    const limit = Error.stackTraceLimit;
    const refusal = new InsufficientScopeException(['orders:write']);
    expect(Error.stackTraceLimit).toBe(limit);
    expect({ message: refusal.message, name: refusal.name, code: refusal.code, status: refusal.getStatus() }).toEqual({
      message: 'Insufficient Scope Exception', name: 'InsufficientScopeException', code: 'insufficient_scope', status: 403,
    });
    expect(new InsufficientScopeException(['a']).message).toBe('Insufficient Scope Exception'); // the second of a class: the kept text
    expect(new InvalidTokenException('expired').message).toBe('Invalid Token Exception');
    expect(String(refusal.stack)).not.toContain('\n    at ');
    expect(String(new PolicyFailedException().stack)).toContain('\n    at ');
  });

  it('O5 a refused message is a WsException named and worded as Nest’s own, without a stack, its fields in their order', async () => {
    const client = {};
    const context = new ExecutionContextHost([client, {}, 'write']);
    context.setType('ws');
    for (let i = 0; i < 2; i++) {
      const error = await refuseMessage(new InsufficientScopeException(['orders:write']), context);
      expect(error).toBeInstanceOf(WsException);
      expect({ name: error.name, message: error.message, stack: String(error.stack).includes('\n    at ') }).toEqual({ name: 'Error', message: 'Ws Exception', stack: false });
      expect(JSON.stringify((error as WsException).getError())).toBe(
        JSON.stringify({ status: 'error', error: 'insufficient_scope', error_description: 'The access token lacks a required scope', scope: 'orders:write' }),
      );
    }
    expect(new WsException({}).message).toBe('Ws Exception');
  });

  it('O5 a handshake is parsed once for all its messages, and read again when its credentials change', () => {
    const socket = { handshake: { auth: { token: 'aaa.bbb.ccc' } as Record<string, unknown>, headers: {} } };
    expect(handshakeToken(socket)).toBe('aaa.bbb.ccc');
    expect(handshakeToken(socket)).toBe('aaa.bbb.ccc');
    socket.handshake.auth.token = 'ddd.eee.fff';
    expect(handshakeToken(socket)).toBe('ddd.eee.fff');
    socket.handshake.auth.token = 42;
    expect(() => handshakeToken(socket)).toThrow(InvalidTokenException);
    expect(() => handshakeToken(socket)).toThrow(InvalidTokenException);
    socket.handshake.auth.token = undefined;
    expect(handshakeToken(socket)).toBeUndefined();
  });
});
