import type { ExchangedToken } from './exchanged-token.interface.js';
import type { TokenExchangeError } from './token-exchange.error.js';

/**
 * Why a granted resource has no token:
 * - `exchange_failed`: the zone refused or failed the exchange (`cause` says how);
 * - `no_inbound_token`: the request carries no verified bearer token to exchange (a `@Public()` route);
 * - `not_granted`: the handler asked for a resource its `@Grant()` does not name.
 * @publicApi
 */
export type ResourceAccessReason = 'exchange_failed' | 'no_inbound_token' | 'not_granted';

/**
 * The typed per-resource failure of a grant, naming the resource. Its message never holds a token,
 * a secret or the zone's `error_description`.
 * @publicApi
 */
export class ResourceAccessError extends Error {
  /** The exchange failure behind an `exchange_failed` error (its `kind`, `code`, `status`). */
  declare readonly cause?: TokenExchangeError;

  constructor(
    /** The upstream resource (as named in `@Grant()`). */
    readonly resource: string,
    readonly reason: ResourceAccessReason,
    cause?: TokenExchangeError,
  ) {
    super(`no access to ${resource}: ${reason === 'exchange_failed' ? (cause?.message ?? 'the exchange failed') : reason.replaceAll('_', ' ')}`, { cause });
    this.name = 'ResourceAccessError';
  }
}

/** `success`: every resource has a token; `partial_error`: some do; `error`: none does. @publicApi */
export type AccessStatus = 'success' | 'partial_error' | 'error';

/**
 * What a `@Grant()` obtained for one request: a token per upstream resource, or a typed error per
 * resource. The grant never fails the request by itself; the handler decides what a missing token
 * means (degrade, answer 424/502, or rethrow the error: the module's exception filter answers a
 * {@link ResourceAccessError} like the exchange failure behind it).
 *
 * @example
 * ```ts
 * if (access.has(GITHUB)) repos = await listRepos(access.access(GITHUB).accessToken);
 * ```
 * @publicApi
 */
export class AccessContext {
  readonly #outcomes: ReadonlyMap<string, ExchangedToken | ResourceAccessError>;
  readonly #failures: number;

  /** @param outcomes per resource, in the order the grant names them: a token or its error. */
  constructor(outcomes: ReadonlyMap<string, ExchangedToken | ResourceAccessError>) {
    this.#outcomes = outcomes;
    let failures = 0;
    for (const outcome of outcomes.values()) if (outcome instanceof ResourceAccessError) failures += 1;
    this.#failures = failures;
  }

  /** `success`, `partial_error` or `error` (a grant naming no resource is a `success`). */
  get status(): AccessStatus {
    if (this.#failures === 0) return 'success';
    return this.#failures === this.#outcomes.size ? 'error' : 'partial_error';
  }

  /** The per-resource errors, keyed by resource (empty on `success`). */
  get errors(): Readonly<Record<string, ResourceAccessError>> {
    const errors: Record<string, ResourceAccessError> = {};
    for (const [resource, outcome] of this.#outcomes) if (outcome instanceof ResourceAccessError) errors[resource] = outcome;
    return errors;
  }

  /** The resources the grant names, in the order they were declared. */
  get resources(): string[] {
    return [...this.#outcomes.keys()];
  }

  hasErrors(): boolean {
    return this.#failures > 0;
  }

  /** True when a token for `resource` was obtained. */
  has(resource: string): boolean {
    const outcome = this.#outcomes.get(resource);
    return outcome !== undefined && !(outcome instanceof ResourceAccessError);
  }

  /**
   * The token for `resource`.
   * @throws ResourceAccessError naming the resource, when its exchange failed or the grant does not name it.
   */
  access(resource: string): ExchangedToken {
    const outcome = this.#outcomes.get(resource);
    if (outcome === undefined) throw new ResourceAccessError(resource, 'not_granted');
    if (outcome instanceof ResourceAccessError) throw outcome;
    return outcome;
  }

  /** Status and per-resource outcome, never a token (safe to log or return). */
  toJSON() {
    const resources: Record<string, string> = {};
    for (const [resource, outcome] of this.#outcomes) {
      resources[resource] = outcome instanceof ResourceAccessError ? (outcome.cause?.code ?? outcome.cause?.kind ?? outcome.reason) : 'granted';
    }
    return { status: this.status, resources };
  }
}
