import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { Clock } from '../clock.js';
import { DpopValidator } from '../dpop/dpop.validator.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { Call } from './call.js';
import type { ConnectionOpening } from './connection-opening.js';

/**
 * One rule a verified token must also pass, on every call — cache hits included — and when a
 * WebSocket or graphql-ws connection opens, after the verification stages (header, zone, key,
 * signature, claims), in the spirit of Spring Security's `DelegatingOAuth2TokenValidator`
 * (STYLE 24): revocation and sender constraints are validators, not branches of the guard.
 * Validators run in the order provided; the first that throws decides. Keep them synchronous and
 * allocation-free on the common path: they run on every request. One that must ask a shared store
 * (the DPoP replay check in Redis) returns a promise, and the call waits for it.
 * @publicApi
 */
export interface TokenValidator {
  /**
   * Accepts `agent` by returning, or refuses by throwing a `KeycardException` (e.g.
   * `InvalidTokenException`, 401 `invalid_token`); anything else thrown becomes 401
   * `invalid_token` too. `call` is the call being decided; `undefined` when a connection opens,
   * and `opening` then says which connection. May return a promise that rejects to refuse.
   */
  validate(agent: AgentContext, call: Call | undefined, opening?: ConnectionOpening): void | Promise<void>;
}

/**
 * The injection token of the app's validators: provide **one array** under it in any module of the
 * app (`{ provide: KEYCARD_TOKEN_VALIDATORS, useValue: [new DenyList()] }`, or `useFactory` with
 * `inject`); the module finds it wherever it is.
 * @publicApi
 */
export const KEYCARD_TOKEN_VALIDATORS = 'KEYCARD:TOKEN_VALIDATORS';

/**
 * The app's {@link TokenValidator}s, found once the app is bootstrapped in whichever module
 * provides {@link KEYCARD_TOKEN_VALIDATORS} (a global module cannot see its importers' providers
 * through injection, so they are looked up in the whole app).
 * @throws TypeError at bootstrap when the provided value is not an array of validators.
 */
@Injectable()
export class TokenValidators implements OnApplicationBootstrap {
  /** The DPoP validator, when DPoP is on (its replay store's state is reported by the health indicator). */
  readonly dpop?: DpopValidator;
  /** The module's own validators (the revocation list, then DPoP when it is on), which run before the app's. */
  private readonly own: TokenValidator[] = [];
  /** The app's (`KEYCARD_TOKEN_VALIDATORS`), found at bootstrap. */
  private app: readonly TokenValidator[] = [];
  private list: readonly TokenValidator[];

  constructor(
    private readonly moduleRef: ModuleRef,
    @Inject(KEYCARD_OPTIONS) options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) clock: Clock,
  ) {
    if (options.dpop !== undefined) this.dpop = new DpopValidator({ options: options.dpop, clock, logger: options.logger });
    if (this.dpop !== undefined) this.own.push(this.dpop);
    this.list = this.own;
  }

  /**
   * Adds one of the module's own validators (the revocation list), run before the app's: call it
   * before the app is bootstrapped (`onModuleInit`).
   * @internal
   */
  useFirst(validator: TokenValidator): void {
    this.own.unshift(validator);
    this.list = [...this.own, ...this.app];
  }

  /**
   * Adds one of the module's own validators after the others of the module (the revocation list and
   * DPoP run first: local checks before one that asks the zone), still before the app's. May be
   * called at any time: calls decided from then on run it.
   * @internal
   */
  useLast(validator: TokenValidator): void {
    this.own.push(validator);
    this.list = [...this.own, ...this.app];
  }

  onApplicationBootstrap(): void {
    let found: unknown;
    try {
      found = this.moduleRef.get(KEYCARD_TOKEN_VALIDATORS, { strict: false });
    } catch {
      return; // none provided
    }
    if (!Array.isArray(found) || !found.every((v) => typeof (v as TokenValidator | null)?.validate === 'function')) {
      throw new TypeError('KEYCARD_TOKEN_VALIDATORS must be provided as an array of objects with a validate(agent, call) method');
    }
    this.app = found as TokenValidator[];
    this.list = [...this.own, ...this.app];
  }

  /**
   * Runs every validator in order: synchronously while they answer synchronously; from the first
   * that returns a promise on, each waits for the one before.
   * @throws (or rejects with) what the first refusing validator throws.
   */
  run(agent: AgentContext, call: Call | undefined, opening?: ConnectionOpening): void | Promise<void> {
    const { list } = this;
    for (let i = 0; i < list.length; i++) {
      const pending = list[i]!.validate(agent, call, opening);
      if (pending instanceof Promise) return this.runFrom(i + 1, pending, { agent, call, opening });
    }
  }

  private async runFrom(
    next: number,
    pending: Promise<void>,
    of: { agent: AgentContext; call: Call | undefined; opening?: ConnectionOpening },
  ): Promise<void> {
    await pending;
    for (let i = next; i < this.list.length; i++) await this.list[i]!.validate(of.agent, of.call, of.opening);
  }
}
