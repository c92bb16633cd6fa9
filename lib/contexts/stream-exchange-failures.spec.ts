import type { CallHandler, ExecutionContext } from '@nestjs/common';
import { lastValueFrom, of } from 'rxjs';
import { TokenExchangeError } from '../exchange/token-exchange.error.js';
import type { TokenExchangeExceptionFilter } from '../exchange/token-exchange.filter.js';
import { ERROR_DESCRIPTIONS, ExchangeFailedException } from '../resource-server/keycard.exceptions.js';
import { endedSubscription, StreamExchangeFailures } from './stream-exchange-failures.js';

/** A GraphQL subscription's call: the interceptor reads its type only. */
const subscriptionCall = { getType: () => 'graphql' } as unknown as ExecutionContext;

/** A source whose `next()` waits until the test settles it, recording what reached it. */
function pendingSource() {
  const calls: string[] = [];
  let settle: { resolve(result: IteratorResult<unknown>): void; reject(error: unknown): void } | undefined;
  const source: AsyncIterableIterator<unknown> = {
    next: () => {
      calls.push('next');
      return new Promise((resolve, reject) => (settle = { resolve, reject }));
    },
    return: (value?: unknown) => {
      calls.push('return');
      return Promise.resolve({ done: true, value });
    },
    [Symbol.asyncIterator]: () => source,
  };
  return { source, calls, settle: () => settle! };
}

/** The interceptor over a filter whose answer is `refused`; the events the handler returned, as the resolver gets them back. */
async function answered(source: AsyncIterable<unknown>, refused: Error) {
  const answers: unknown[] = [];
  const filter = {
    answerInStream: (error: unknown) => {
      answers.push(error);
      return { denial: refused, refused };
    },
  } as unknown as TokenExchangeExceptionFilter;
  const next: CallHandler = { handle: () => of(source) };
  const events = (await lastValueFrom(new StreamExchangeFailures(filter).intercept(subscriptionCall, next))) as AsyncIterableIterator<unknown>;
  return { events, answers };
}

describe('StreamExchangeFailures (a GraphQL subscription\'s events)', () => {
  const refused = new ExchangeFailedException(503, 'temporarily_unavailable', ERROR_DESCRIPTIONS.exchangeUnavailable);

  it('passes events on, and a client completing the subscription while it waits for an event reaches the source at once', async () => {
    const { source, calls, settle } = pendingSource();
    const { events } = await answered(source, refused);
    const first = events.next();
    settle().resolve({ done: false, value: { ticks: 1 } });
    await expect(first).resolves.toEqual({ done: false, value: { ticks: 1 } });
    const waiting = events.next();
    await expect(events.return!()).resolves.toEqual({ done: true, value: undefined });
    expect(calls).toEqual(['next', 'next', 'return']);
    settle().resolve({ done: true, value: undefined });
    await waiting;
  });

  it('a failed exchange out of the events → the filter\'s refusal, the source released, the subscription marked ended', async () => {
    const { source, calls, settle } = pendingSource();
    const { events, answers } = await answered(source, refused);
    const failure = new TokenExchangeError('the token endpoint answered HTTP 503', 'unavailable', undefined, 503, 600);
    const first = events.next();
    settle().reject(failure);
    await expect(first).rejects.toBe(refused);
    expect(answers).toEqual([failure]);
    expect(calls).toEqual(['next', 'return']);
    expect(endedSubscription(refused)).toBe(true);
  });

  it('any other error out of the events goes on as it is, the filter not asked', async () => {
    const { source, settle } = pendingSource();
    const { events, answers } = await answered(source, refused);
    const other = new Error('the upstream feed broke');
    const first = events.next();
    settle().reject(other);
    await expect(first).rejects.toBe(other);
    expect(answers).toEqual([]);
    expect(endedSubscription(other)).toBe(false);
  });
});
