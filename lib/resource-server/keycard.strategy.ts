import { Inject, Injectable } from '@nestjs/common';
import type * as NestPassport from '@nestjs/passport';
import passport from 'passport';
import { Strategy, type StrategyOptionsWithRequest } from 'passport-jwt';
import { checkHeader, toAgentContext } from './access-token-rules.js';
import { readJwsHeader, readUnverifiedIssuer } from './compact-jws.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import { KeycardException, InvalidTokenException } from './keycard.exceptions.js';
import type { Clock } from '../clock.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { VerificationKey } from '../zone/jwks-key-store.js';
import { TrustedZones, type TrustedZone } from '../zone/trusted-zones.js';
import type { ProtectedResource } from './protected-resource.js';
import { requireFromHost } from '../zone/host-require.cjs';

/**
 * `@nestjs/passport` 12 is ESM-only and npm installs it in NestJS 11 apps too (its peer range
 * allows both): loaded by Node itself so that a CommonJS app's Jest run on Node 20/22 needs no
 * transform (see {@link requireFromHost}). Only `PassportStrategy`, a plain class factory, is used.
 */
const { PassportStrategy } = requireFromHost<typeof NestPassport>('@nestjs/passport');

/** Name of the strategy in the module's own passport instance. */
export const KEYCARD_STRATEGY = 'keycard';

/**
 * What the strategy verifies: passport-jwt is handed this object in place of the HTTP request, so
 * nothing is ever attached to (or read from) the request object itself.
 */
export interface VerificationRequest {
  readonly token: string;
  readonly resource: ProtectedResource;
  /** The zone the token's `iss` selected, once known. */
  zone?: TrustedZone;
  /** The zone key the token's signature was checked with, once known. */
  key?: VerificationKey;
}

/** The callbacks passport attaches to a strategy for one authentication (passport-strategy API). */
interface StrategyAttempt {
  success(agent: AgentContext): void;
  fail(info?: unknown): void;
  error(error: unknown): void;
  pass(): void;
  redirect(url: string): void;
  authenticate(request: object, options: object): void;
}

/** passport-jwt's `secretOrKeyProvider` callback: jsonwebtoken 9 takes a `KeyObject` as is (the typings only know PEM strings). */
type KeyCallback = (error: unknown, key?: string) => void;

/** passport-jwt's verify callback as it calls it with `passReqToCallback` (strategy.js: `self._verify(req, payload, verified)`). */
type VerifyCallback = (request: unknown, payload: unknown, verified: (error: unknown, agent?: AgentContext) => void) => void;

/** The outcome of one attempt: the agent, or what refused it. */
type Outcome = { agent: AgentContext } | { error: unknown };

/**
 * The passport-jwt strategy, configured so none of its defaults apply (catalogue J4–J8):
 * - the token comes from the guard's strict extractor, never from passport-jwt's extractors;
 * - the key comes only from the zone's JWKS, selected after our header rules, as a cached
 *   `KeyObject` (no PEM parsing per request); jsonwebtoken then checks the signature;
 * - time, issuer and audience rules run in `validate` with the module's clock, because
 *   jsonwebtoken accepts tokens without `exp` and checks nothing of `typ`, `crit` or `iat`.
 * Registered in a passport instance of its own, so several Keycard modules (or an app's own
 * passport strategies) in one process never replace each other.
 *
 * The cold path (a token never seen before) involves no promise while the zone's keys are fresh:
 * the key provider answers passport-jwt synchronously from the key store, and `validate` is called
 * directly rather than through `@nestjs/passport`'s `async` wrapper, so {@link verify} returns the
 * agent at once (issue 24: per-request tokens).
 */
@Injectable()
export class KeycardStrategy extends PassportStrategy(Strategy, KEYCARD_STRATEGY) {
  /** Set during the base constructor, before field initialisers run: hence `declare`. */
  declare private ownPassport?: passport.PassportStatic;
  /**
   * This strategy as constructed, the prototype of every attempt (see {@link verify}). Not `this`
   * at call time: under an APM `instrument` (`@nestjs/observe`'s `ObserveInstrument`, which
   * `nest new` generates with CLI 12) the container hands out a Proxy whose method wrappers are
   * cached per method and bound to the receiver of their first lookup, so an attempt inheriting
   * from the Proxy runs passport-jwt's `authenticate` as another attempt (its outcome lost: the
   * call hangs) or as the Proxy itself (no `fail`: a TypeError out of a callback). No method of an
   * attempt built on the raw instance passes through the Proxy.
   */
  private readonly unwrapped: this = this;

  constructor(
    private readonly zones: TrustedZones,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    const self: { strategy?: KeycardStrategy } = {};
    const strategyOptions: StrategyOptionsWithRequest = {
      jwtFromRequest: (request: unknown) => (request as VerificationRequest).token,
      secretOrKeyProvider: (request: unknown, _rawToken: unknown, done: KeyCallback) => {
        self.strategy!.provideKey(request as VerificationRequest, done);
      },
      algorithms: [...options.algorithms],
      // Time rules run in validate() with the module's clock (see above).
      ignoreExpiration: true,
      jsonWebTokenOptions: { ignoreNotBefore: true },
      passReqToCallback: true,
    };
    super(strategyOptions);
    self.strategy = this;
    // @nestjs/passport hands passport-jwt an `async` wrapper that awaits validate(): a promise and a
    // microtask per token. validate() is synchronous, so it is called directly; a throw is turned
    // into `error` by passport-jwt's own try/catch around this call.
    (this as unknown as { _verify: VerifyCallback })._verify = (request, payload, verified) => verified(null, this.validate(request, payload));
  }

  /** The passport instance this strategy lives in. */
  getPassportInstance(): passport.PassportStatic {
    this.ownPassport ??= new passport.Passport() as passport.PassportStatic;
    return this.ownPassport;
  }

  /**
   * Verifies `verification.token` for `verification.resource`, running this strategy the way
   * passport does — a per-attempt object whose `success` / `fail` / `error` settle the outcome —
   * without passport's middleware, which would decorate every request object with session helpers
   * this stateless guard never uses. On success `verification.key` holds the key that verified it.
   * @returns the agent synchronously when every step could answer at once (the zone's keys are
   *   fresh), else a promise of it.
   * @throws (or rejects with) KeycardException, or what the stack threw (callers make it `invalid_token`).
   */
  verify(verification: VerificationRequest): AgentContext | Promise<AgentContext> {
    let outcome: Outcome | undefined;
    let settle: ((outcome: Outcome) => void) | undefined;
    const finish = (result: Outcome) => {
      if (outcome !== undefined) return; // the first outcome wins, as with passport
      outcome = result;
      settle?.(result);
    };
    const attempt = Object.create(this.unwrapped) as StrategyAttempt;
    attempt.success = (agent) => finish({ agent });
    attempt.fail = (info) => finish({ error: info instanceof KeycardException ? info : new InvalidTokenException('signature_invalid') });
    attempt.error = (error) => finish({ error });
    attempt.pass = attempt.redirect = () => finish({ error: new InvalidTokenException('token_malformed') });
    try {
      attempt.authenticate(verification, {});
    } catch (error) {
      finish({ error });
    }
    if (outcome !== undefined) return agentOf(outcome);
    return new Promise((resolve, reject) => {
      settle = (result) => ('agent' in result ? resolve(result.agent) : reject(result.error));
    });
  }

  /**
   * Header rules first, then the zone, then key selection: nothing of the token reaches the network
   * (INV6). With several zones the unverified `iss` picks the zone from the exact allow-list, so an
   * unknown issuer is refused before any fetch and only its own zone's keys can verify a token (C23);
   * with one zone `iss` is checked after the signature, like every claim. Answers `done` at once
   * when the key store knows the key, so jsonwebtoken runs in the same tick.
   */
  private provideKey(verification: VerificationRequest, done: KeyCallback): void {
    let key: VerificationKey | Promise<VerificationKey>;
    try {
      key = this.selectKey(verification);
    } catch (error) {
      done(error);
      return;
    }
    if (!(key instanceof Promise)) {
      done(null, this.keyUsed(verification, key));
      return;
    }
    // A throw out of passport-jwt after a late answer must still settle the attempt (no hang).
    key.then((found) => done(null, this.keyUsed(verification, found)), done).catch(done);
  }

  private selectKey(verification: VerificationRequest): VerificationKey | Promise<VerificationKey> {
    const header = readJwsHeader(verification.token);
    const { alg, kid } = checkHeader(header, this.options);
    const zone = this.zones.only ?? this.zones.forIssuer(readUnverifiedIssuer(verification.token));
    if (zone === undefined) throw new InvalidTokenException('issuer_mismatch');
    if (!zone.serves(verification.resource.id)) throw new InvalidTokenException('audience_mismatch');
    verification.zone = zone;
    return zone.keys.keyFor(kid, alg);
  }

  /** Records the key on the verification (for the verified-token cache) and hands it to jsonwebtoken. */
  private keyUsed(verification: VerificationRequest, key: VerificationKey): string {
    verification.key = key;
    return key.key as unknown as string;
  }

  /** Called by passport-jwt with the payload whose signature jsonwebtoken verified. */
  validate(request: unknown, payload: unknown): AgentContext {
    const verification = request as VerificationRequest;
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new InvalidTokenException('token_malformed');
    }
    return toAgentContext(
      payload as Record<string, unknown>,
      { issuer: verification.zone!.issuer, audience: verification.resource.id, nowSeconds: this.clock.now() / 1000 },
      this.options,
    );
  }
}

function agentOf(outcome: Outcome): AgentContext {
  if ('agent' in outcome) return outcome.agent;
  throw outcome.error;
}
