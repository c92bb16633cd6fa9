import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { EventEmitter } from 'node:events';
import type { KeycardLogger } from '../keycard-options.js';
import { InsufficientScopeException, MissingCredentialsException, type KeycardException } from '../resource-server/keycard.exceptions.js';
import { endRuns, flushRuns, MAX_RUNS, REFUSAL_RUN_SUMMARY_MS, startsRun } from './connection-refusal-runs.js';

/** A logger that keeps each line with its level. */
function recordingLogger(): KeycardLogger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (line: string) => void lines.push(`${level} ${line}`);
  return { lines, log: at('log'), warn: at('warn'), error: at('error'), debug: at('debug') } as KeycardLogger & { lines: string[] };
}

const agent = { clientId: 'agent-a', subject: 'alice', tokenId: 'jti-1', scopes: ['orders:read'] } as never;
const lacking = new InsufficientScopeException(['orders:write']);

describe('connection refusal runs (O5)', () => {
  let logger: ReturnType<typeof recordingLogger>;
  const refuse = (carrier: object, handler = 'ws write', denial: KeycardException = lacking) =>
    startsRun({ carrier, handler, denial, agent, describe: () => handler, logger });

  beforeEach(() => {
    jest.useFakeTimers();
    logger = recordingLogger();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('O5 a run that never ends is summarised once per interval, counting afresh after each summary, and at close', () => {
    const socket = new EventEmitter();
    expect(refuse(socket)).toBe(true);
    for (let i = 0; i < 99; i++) expect(refuse(socket)).toBe(false);
    jest.advanceTimersByTime(REFUSAL_RUN_SUMMARY_MS - 1);
    expect(logger.lines).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(logger.lines).toEqual(['warn denied ws write status=403 reason=insufficient_scope agent=agent-a user=alice jti=jti-1 repeated=99']);
    jest.advanceTimersByTime(10 * REFUSAL_RUN_SUMMARY_MS); // nothing repeated since: no line, no timer
    expect(logger.lines).toHaveLength(1);
    for (let i = 0; i < 5; i++) expect(refuse(socket)).toBe(false); // the run goes on
    socket.emit('close');
    expect(logger.lines.slice(1)).toEqual(['warn denied ws write status=403 reason=insufficient_scope agent=agent-a user=alice jti=jti-1 repeated=5']);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('O5 a socket.io socket ends its runs at disconnect; a graphql-ws context at its socket\'s close (contexts of one connection share runs); routine refusals are summarised at debug', () => {
    const io = Object.assign(new EventEmitter(), { handshake: {} });
    refuse(io);
    refuse(io);
    io.emit('disconnect');
    expect(logger.lines).toEqual(['warn denied ws write status=403 reason=insufficient_scope agent=agent-a user=alice jti=jti-1 repeated=1']);
    const socket = new EventEmitter();
    const none = new MissingCredentialsException();
    expect(refuse({ extra: { socket } }, 'Subscription.ticks', none)).toBe(true);
    expect(refuse({ extra: { socket } }, 'Subscription.ticks', none)).toBe(false);
    socket.emit('close');
    expect(logger.lines[1]).toMatch(/^debug denied Subscription\.ticks status=401 reason=no_credentials .* repeated=1$/);
  });

  it('O5 a served message ends the runs; beyond the runs a connection keeps, refusals fold per reason; a carrier that cannot close is summarised by the timer', () => {
    const socket = new EventEmitter();
    refuse(socket);
    refuse(socket);
    endRuns(socket);
    expect(logger.lines).toHaveLength(1);
    expect(refuse(socket)).toBe(true);
    endRuns(socket); // no repeat: no line
    expect(logger.lines).toHaveLength(1);
    for (let i = 0; i < MAX_RUNS; i++) expect(refuse(socket, `ws h${i}`)).toBe(true);
    expect(refuse(socket, 'ws one-too-many')).toBe(true);
    expect(refuse(socket, 'ws one-too-many')).toBe(false); // folded with the other calls beyond the runs (below)
    const plain = {};
    refuse(plain);
    refuse(plain);
    jest.advanceTimersByTime(REFUSAL_RUN_SUMMARY_MS);
    expect(logger.lines.at(-1)).toMatch(/repeated=1$/);
    socket.emit('close');
  });

  it('O5 refusals decided after their connection closed (ws CLOSED, engine.io closed, socket.io disconnected) are logged one by one: nothing is left to write a summary at', () => {
    for (const gone of [Object.assign(new EventEmitter(), { readyState: 3 }), Object.assign(new EventEmitter(), { readyState: 'closed' }), Object.assign(new EventEmitter(), { handshake: {}, connected: false })]) {
      for (let i = 0; i < 3; i++) expect(refuse(gone)).toBe(true);
      expect(jest.getTimerCount()).toBe(0);
    }
    const open = Object.assign(new EventEmitter(), { readyState: 1 });
    expect([refuse(open), refuse(open)]).toEqual([true, false]); // an open one folds as before
    open.emit('close');
  });

  it('O5 at shutdown the runs counted on the app\'s logger are summarised at once (another app\'s are not); they go on counting afresh, and the close writes only what came after', () => {
    const socket = new EventEmitter();
    const elsewhere = new EventEmitter();
    const other = recordingLogger();
    for (let i = 0; i < 4; i++) refuse(socket);
    for (let i = 0; i < 3; i++) startsRun({ carrier: elsewhere, handler: 'ws write', denial: lacking, agent, describe: () => 'ws write', logger: other });
    flushRuns(logger);
    expect(logger.lines).toEqual(['warn denied ws write status=403 reason=insufficient_scope agent=agent-a user=alice jti=jti-1 repeated=3']);
    expect(other.lines).toEqual([]);
    socket.emit('close');
    expect(logger.lines).toHaveLength(1);
    elsewhere.emit('close');
    expect(other.lines).toEqual(['warn denied ws write status=403 reason=insufficient_scope agent=agent-a user=alice jti=jti-1 repeated=2']);
  });

  it('O5 a client that refuses more handlers than a connection keeps runs of (a schema with more protected fields) cannot bring back a line per refusal: refusals beyond fold into one run per reason, named "other calls"', () => {
    const socket = new EventEmitter();
    for (let i = 0; i < MAX_RUNS; i++) refuse(socket, `Query.f${i}`);
    logger.lines.length = 0;
    const written = Array.from({ length: 1_000 }, (_, i) => refuse(socket, `Query.g${i % 8}`)).filter(Boolean).length;
    expect(written).toBe(1); // the first refusal beyond the runs, on its own line
    const none = new MissingCredentialsException();
    expect([refuse(socket, 'Query.g0', none), refuse(socket, 'Query.g1', none)]).toEqual([true, false]); // another reason: a run of its own
    socket.emit('close');
    expect(logger.lines).toEqual([
      'warn denied other calls (beyond 32 runs) status=403 reason=insufficient_scope agent=agent-a user=alice jti=jti-1 repeated=999',
      'debug denied other calls (beyond 32 runs) status=401 reason=no_credentials agent=agent-a user=alice jti=jti-1 repeated=1',
    ]);
  });
});
