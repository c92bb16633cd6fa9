/** The error a {@link withinDeadline} or {@link beforeAbort} promise rejects with when its deadline comes first. */
export class DeadlineExceededError extends Error {
  override readonly name = 'DeadlineExceededError';
}

/**
 * `work`, or a {@link DeadlineExceededError} after `ms` milliseconds, whichever comes first; a late
 * failure of the abandoned work is swallowed. For calls to shared stores whose clients queue
 * commands while they reconnect: a request must not wait on them.
 */
export function withinDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError(`no answer within ${ms} ms`)), ms);
  });
  return firstOf(work, deadline, () => clearTimeout(timer));
}

/**
 * `work`, or a {@link DeadlineExceededError} once `signal` aborts (at once if it already has),
 * whichever comes first; a late failure of the abandoned work is swallowed. For a step of a request
 * that already runs under an overall deadline (`AbortSignal.timeout`), such as reading client
 * credentials from an app's function or a file system that may never answer.
 */
export function beforeAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort: () => void = () => undefined;
  const deadline = new Promise<never>((_, reject) => {
    onAbort = () => reject(new DeadlineExceededError('the deadline passed first'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return firstOf(work, deadline, () => signal.removeEventListener('abort', onAbort));
}

/** `work` or `deadline`, whichever settles first; then `release` (the timer, the listener). */
async function firstOf<T>(work: Promise<T>, deadline: Promise<never>, release: () => void): Promise<T> {
  try {
    return await Promise.race([work, deadline]);
  } catch (error) {
    work.catch(() => undefined);
    throw error;
  } finally {
    release();
  }
}
