/**
 * Identical concurrent work done once (catalogue E1, I25, X34): callers that ask for a key while
 * its work is under way share that one promise; once it settles, the next caller starts anew.
 * Failures are shared with every waiter and never kept. The shared promise belongs to no caller,
 * so one caller going away does not cancel it (I28).
 */
export class SingleFlight<V> {
  private readonly pending = new Map<string, Promise<V>>();

  /** The work under way for `key`, or `work()` started now and shared until it settles. */
  run(key: string, work: () => Promise<V>): Promise<V> {
    const pending = this.pending.get(key);
    if (pending !== undefined) return pending;
    const flight = work().finally(() => this.pending.delete(key));
    this.pending.set(key, flight);
    return flight;
  }
}
