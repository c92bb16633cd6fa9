/** The error a {@link withinDeadline} promise rejects with when `ms` pass first. */
export class DeadlineExceededError extends Error {
  override readonly name = 'DeadlineExceededError';
}

/**
 * `work`, or a {@link DeadlineExceededError} after `ms` milliseconds, whichever comes first; a late
 * failure of the abandoned work is swallowed. For calls to shared stores whose clients queue
 * commands while they reconnect: a request must not wait on them.
 */
export async function withinDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } catch (error) {
    work.catch(() => undefined);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
