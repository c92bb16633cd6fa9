import { describe, expect, it } from '@jest/globals';
import { CoarseDeadlines } from './coarse-deadlines.js';
import { DeadlineExceededError } from './within-deadline.js';

const never = () => new Promise<never>(() => undefined);
const settled = (promise: Promise<unknown>) => promise.then((value) => ({ value }), (error: unknown) => ({ error }));

describe('CoarseDeadlines (the DPoP replay store\'s deadline without a timer per request, issue 22)', () => {
  it('passes an answer or a failure through; abandons a wait that outlives the deadline with DeadlineExceededError', async () => {
    const deadlines = new CoarseDeadlines(40);
    expect(await deadlines.within(Promise.resolve('OK'))).toBe('OK');
    await expect(deadlines.within(Promise.reject(new Error('down')))).rejects.toThrow('down');
    const outcome = await settled(deadlines.within(never()));
    expect((outcome as { error: unknown }).error).toBeInstanceOf(DeadlineExceededError);
  });

  it('a late failure of abandoned work is dropped (no unhandled rejection); the ticker stops when idle and starts again', async () => {
    const deadlines = new CoarseDeadlines(10);
    let fail!: (error: Error) => void;
    const late = new Promise<never>((_, reject) => (fail = reject));
    await expect(deadlines.within(late)).rejects.toBeInstanceOf(DeadlineExceededError);
    fail(new Error('late'));
    const internals = deadlines as unknown as { ticker: unknown };
    while (internals.ticker !== undefined) await new Promise((resolve) => setTimeout(resolve, 5));
    await expect(deadlines.within(never())).rejects.toBeInstanceOf(DeadlineExceededError);
  });
});
