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

/**
 * The passport-jwt strategy, configured so none of its defaults apply (catalogue J4–J8):
 * - the token comes from the guard's strict extractor, never from passport-jwt's extractors;
 * - the key comes only from the zone's JWKS, selected after our header rules, as a cached
 *   `KeyObject` (no PEM parsing per request); jsonwebtoken then checks the signature;
 * - time, issuer and audience rules run in `validate` with the module's clock, because
 *   jsonwebtoken accepts tokens without `exp` and checks nothing of `typ`, `crit` or `iat`.
 * Registered in a passport instance of its own, so several Keycard modules (or an app's own
 * passport strategies) in one process never replace each other.
 */
@Injectable()
export class KeycardStrategy extends PassportStrategy(Strategy, KEYCARD_STRATEGY) {
  /** Set during the base constructor, before field initialisers run: hence `declare`. */
  declare private ownPassport?: passport.PassportStatic;

  constructor(
    private readonly zones: TrustedZones,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    const self: { strategy?: KeycardStrategy } = {};
    const strategyOptions: StrategyOptionsWithRequest = {
      jwtFromRequest: (request: unknown) => (request as VerificationRequest).token,
      secretOrKeyProvider: (request: unknown, _rawToken: unknown, done: (error: unknown, key?: string) => void) => {
        self.strategy!.provideKey(request).then(
          // jsonwebtoken 9 takes a KeyObject as is; the typings only know PEM strings.
          (key) => done(null, key as unknown as string),
          (error: unknown) => done(error),
        );
      },
      algorithms: [...options.algorithms],
      // Time rules run in validate() with the module's clock (see above).
      ignoreExpiration: true,
      jsonWebTokenOptions: { ignoreNotBefore: true },
      passReqToCallback: true,
    };
    super(strategyOptions);
    self.strategy = this;
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
   */
  verify(verification: VerificationRequest): Promise<AgentContext> {
    return new Promise((resolve, reject) => {
      const attempt = Object.create(this) as StrategyAttempt;
      attempt.success = (agent) => resolve(agent);
      attempt.fail = (info) => reject(info instanceof KeycardException ? info : new InvalidTokenException('signature_invalid'));
      attempt.error = (error) => reject(error);
      attempt.pass = attempt.redirect = () => reject(new InvalidTokenException('token_malformed'));
      attempt.authenticate(verification, {});
    });
  }

  /**
   * Header rules first, then the zone, then key selection: nothing of the token reaches the network
   * (INV6). With several zones the unverified `iss` picks the zone from the exact allow-list, so an
   * unknown issuer is refused before any fetch and only its own zone's keys can verify a token (C23);
   * with one zone `iss` is checked after the signature, like every claim.
   */
  private async provideKey(request: unknown) {
    const verification = request as VerificationRequest;
    const header = readJwsHeader(verification.token);
    const { alg, kid } = checkHeader(header, this.options);
    const zone = this.zones.only ?? this.zones.forIssuer(readUnverifiedIssuer(verification.token));
    if (zone === undefined) throw new InvalidTokenException('issuer_mismatch');
    if (!zone.serves(verification.resource.id)) throw new InvalidTokenException('audience_mismatch');
    verification.zone = zone;
    verification.key = await zone.keys.keyFor(kid, alg);
    return verification.key.key;
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
