import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import { catchError, map, Observable, throwError } from 'rxjs';
import { ResourceAccessError } from '../exchange/access-context.js';
import type { TokenExchangeExceptionFilter } from '../exchange/token-exchange.filter.js';
import { TokenExchangeError } from '../exchange/token-exchange.error.js';
import { httpResponseOf } from './http-arguments.js';
import { rawResponseOf } from './http.context.js';
import { SSE_STREAMS } from './sse-stream.door.js';

/** What `TokenExchangeExceptionFilter` answers: a failed exchange, or a grant's error a handler rethrew. */
function isExchangeFailure(error: unknown): error is TokenExchangeError | ResourceAccessError {
  return error instanceof TokenExchangeError || error instanceof ResourceAccessError;
}

/** The refusals subscriptions' event iterators failed with here (see {@link endedSubscription}). */
const subscriptionEnds = new WeakSet<object>();

/**
 * True when `error` is the refusal a GraphQL subscription's event iterator failed with here: the
 * subscription is over, and a server that keeps it until the client completes it (Mercurius) can
 * let it go once the error is sent.
 */
export function endedSubscription(error: unknown): boolean {
  return typeof error === 'object' && error !== null && subscriptionEnds.has(error);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

/**
 * Answers a handler's failed token exchange (catalogue Q8) that comes out of the stream the
 * handler returned, where Nest runs no exception filter, as `TokenExchangeExceptionFilter` answers
 * it everywhere else (its answer, its log line: `TokenExchangeExceptionFilter.answerInStream()`):
 * - an `@Sse()` route's Observable (the handler rethrew the grant's error before returning its
 *   stream, or while making an event): before the response head is sent, the error goes on to the
 *   filter, which answers as for any route (503 JSON with `Retry-After`); once it is sent, the SSE
 *   door ends the stream as at expiry (decision Q20): one `event: error` whose data is
 *   `{"error","error_description"}` with the fixed description, then the end of the response;
 * - a GraphQL subscription's event iterator (the grant's error rethrown in an async generator's
 *   body, after the resolver returned it): the iterator fails with the field's GraphQL error
 *   (`extensions.code`, `error`, `error_description`), the one the filter throws when the resolver
 *   itself fails, and the server sends it as the subscription's `error` message; the iterator's
 *   source is released.
 *
 * Any other error out of a stream goes on as it is. Put by `KeycardStreams` on `@Sse()` handlers
 * and `@Subscription()` resolvers only, inside its expiry interceptor: other handlers never run it.
 */
export class StreamExchangeFailures implements NestInterceptor {
  constructor(private readonly filter: TokenExchangeExceptionFilter) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType<string>() === 'graphql') {
      return next.handle().pipe(map((result) => (isAsyncIterable(result) ? this.answering(result, context) : result)));
    }
    return next.handle().pipe(catchError((error: unknown) => this.endedSse(error, context)));
  }

  /** An `@Sse()` stream that failed with `error`: ended by the SSE door once the head is out, else left to the filters. */
  private endedSse(error: unknown, context: ExecutionContext): Observable<unknown> {
    // Before the head, Nest hands the error to the exception filters, which can still answer it.
    if (!isExchangeFailure(error) || !rawResponseOf(httpResponseOf<object>(context)).headersSent) return throwError(() => error);
    const answer = this.filter.answerInStream(error, context);
    if (answer === undefined) return throwError(() => error);
    return new Observable((subscriber) => SSE_STREAMS.end(subscriber, answer.denial));
  }

  /**
   * `events`, failing with the door's refusal where they fail with an exchange failure. A plain
   * iterator, not an async generator: a generator's `return()` waits for its pending `next()`, so a
   * client completing a subscription that waits for its next event would keep its source. A source
   * written by hand may answer `next()` with plain results or throw synchronously (graphql-js awaits
   * whatever it gets): both are taken as they come. The source is released once, however many
   * times the server and the refusal ask.
   */
  private answering(events: AsyncIterable<unknown>, context: ExecutionContext): AsyncIterableIterator<unknown> {
    const source = events[Symbol.asyncIterator]();
    let released = false;
    const release = (value?: unknown): Promise<IteratorResult<unknown>> => {
      if (released) return Promise.resolve({ done: true, value });
      released = true;
      return settled(() => source.return?.(value) ?? { done: true, value });
    };
    const failed = async (error: unknown): Promise<never> => {
      const answer = isExchangeFailure(error) ? this.filter.answerInStream(error, context) : undefined;
      if (answer === undefined) throw error;
      // The subscription ends here: a source that outlives its failure (a pubsub iterator) is
      // released, whatever its return() does (the client gets the refusal, never the source's error).
      void release().catch(() => undefined);
      const refused = await answer.refused;
      subscriptionEnds.add(refused);
      throw refused;
    };
    const answered: AsyncIterableIterator<unknown> = {
      next: (...value: [] | [unknown]) => settled(() => source.next(...value)).then(undefined, failed),
      return: release,
      [Symbol.asyncIterator]: () => answered,
    };
    if (source.throw !== undefined) answered.throw = (error?: unknown) => settled(() => source.throw!(error)).then(undefined, failed);
    return answered;
  }
}

/** What `step` answers, as a promise: a plain result resolves, a synchronous throw rejects. */
function settled<T>(step: () => T | PromiseLike<T>): Promise<T> {
  try {
    return Promise.resolve(step());
  } catch (error) {
    return Promise.reject(error);
  }
}
