/**
 * The outage state of a shared store (Redis behind the throttler storage or the exchange cache):
 * after a failure the store is not asked for `backOffMs`, and then by one call at a time until it
 * answers, so an outage costs at most one deadline per back-off window instead of one per request.
 * The callers log the first failure and the recovery (each once per outage).
 */
export class StoreOutage {
  private down = false;
  private retryAt = 0;
  private probing = false;

  /**
   * @param backOffMs how long the store is left alone after a failure, in ms.
   * @param now the clock, in ms.
   */
  constructor(
    private readonly backOffMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when this call may ask the store; a caller that gets true must report how it went. */
  mayAsk(): boolean {
    if (!this.down) return true;
    if (this.probing || this.now() < this.retryAt) return false;
    this.probing = true;
    return true;
  }

  /** The store answered. @returns true when that ends an outage (log the recovery). */
  answered(): boolean {
    this.probing = false;
    if (!this.down) return false;
    this.down = false;
    return true;
  }

  /** The store failed or missed its deadline. @returns true when that starts an outage (log it). */
  failed(): boolean {
    this.probing = false;
    this.retryAt = this.now() + this.backOffMs;
    if (this.down) return false;
    this.down = true;
    return true;
  }
}
