import { Inject, Injectable } from '@nestjs/common';
import type * as NestPassport from '@nestjs/passport';
import passport from 'passport';
import { Strategy, type StrategyOptionsWithRequest } from 'passport-jwt';
import { checkHeader, toAgentContext } from './access-token-rules.js';
import { decodeJws, parsePayload } from './compact-jws.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import { KeycardException, InvalidTokenException } from './keycard.exceptions.js';
import type { Clock } from '../clock.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { VerificationKey } from '../zone/jwks-key-store.js';
import { TrustedZones } from '../zone/trusted-zones.js';
import { installTokenVerifier } from './passport-jwt-verifier.js';
import { SignedHeaders } from './signed-headers.js';
import { TokenVerification } from './token-verification.js';
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
 * One authentication as passport runs it: an object whose prototype is the strategy, with the
 * callbacks passport attaches (passport-strategy API). Here the callbacks live on a prototype made
 * once per strategy and record into the attempt's own fields: one object per token, no closures.
 */
interface Attempt {
  /** What settled the attempt first (passport: the first outcome wins). */
  outcome?: Outcome;
  /** Set when the attempt could not settle synchronously (the zone's keys had to be fetched). */
  settle?: (outcome: Outcome) => void;
  authenticate(request: object, options: object): void;
}

/** passport-jwt's `secretOrKeyProvider` callback; the key is handed to passport-jwt's verifier as is (typed as a PEM string). */
type KeyCallback = (error: unknown, key?: string) => void;

/** passport-jwt's verify callback as it calls it with `passReqToCallback` (strategy.js: `self._verify(req, payload, verified)`). */
type VerifyCallback = (request: unknown, payload: unknown, verified: (error: unknown, agent?: AgentContext) => void) => void;

/** The outcome of one attempt: the agent, or what refused it. */
type Outcome = { agent: AgentContext } | { error: unknown };

/** Settles `attempt` with `outcome` unless it is settled already. */
function finish(attempt: Attempt, outcome: Outcome): void {
  if (attempt.outcome !== undefined) return;
  attempt.outcome = outcome;
  attempt.settle?.(outcome);
}

/** The passport-strategy callbacks of every attempt, on the attempts' shared prototype. */
const ATTEMPT_CALLBACKS = {
  success(this: Attempt, agent: AgentContext): void {
    finish(this, { agent });
  },
  fail(this: Attempt, info?: unknown): void {
    finish(this, { error: info instanceof KeycardException ? info : new InvalidTokenException('signature_invalid') });
  },
  error(this: Attempt, error: unknown): void {
    finish(this, { error });
  },
  pass(this: Attempt): void {
    finish(this, { error: new InvalidTokenException('token_malformed') });
  },
  redirect(this: Attempt): void {
    finish(this, { error: new InvalidTokenException('token_malformed') });
  },
};

/**
 * The passport-jwt strategy, configured so none of its defaults apply (catalogue J4–J8):
 * - the token comes from the guard's strict extractor, never from passport-jwt's extractors;
 * - the header rules run and the key is selected in the key provider, from the zone's JWKS only,
 *   as a `KeyObject` imported when the key set was fetched (no PEM parsing per request);
 * - passport-jwt's verifier checks the signature: for this strategy's tokens that is the module's
 *   own, one `crypto.verify` over the token decoded once (see {@link installTokenVerifier}; issue
 *   24), not `jsonwebtoken.verify`, which decodes the token a second time;
 * - time, issuer and audience rules run in `validate` with the module's clock (jsonwebtoken would
 *   accept tokens without `exp` and check nothing of `typ`, `crit` or `iat`, J1).
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
   * The prototype of every attempt: this strategy as constructed (the constructor's `this`, never
   * the `this` of a later call), with passport's callbacks. Under an APM `instrument`
   * (`@nestjs/observe`'s `ObserveInstrument`, which `nest new` generates with CLI 12) the container
   * hands out a Proxy whose method wrappers are cached per method and bound to the receiver of
   * their first lookup: an attempt inheriting from the Proxy would run passport-jwt's
   * `authenticate` as another attempt (its outcome lost: the call hangs) or as the Proxy itself (no
   * `fail`: a TypeError out of a callback). No method of an attempt built on the raw instance
   * passes through the Proxy.
   */
  declare private attempts: object;
  /** Headers of verified tokens by their text, so a zone's repeated header is decoded once (issue 24). */
  private readonly signedHeaders = new SignedHeaders();

  constructor(
    private readonly zones: TrustedZones,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    installTokenVerifier();
    const self: { strategy?: KeycardStrategy } = {};
    const strategyOptions: StrategyOptionsWithRequest = {
      jwtFromRequest: (request: unknown) => (request as TokenVerification).token,
      secretOrKeyProvider: (request: unknown, _rawToken: unknown, done: KeyCallback) => {
        self.strategy!.provideKey(request as TokenVerification, done);
      },
      algorithms: [...options.algorithms],
      // Time rules run in validate() with the module's clock (see above).
      ignoreExpiration: true,
      jsonWebTokenOptions: { ignoreNotBefore: true },
      passReqToCallback: true,
    };
    super(strategyOptions);
    self.strategy = this;
    this.attempts = Object.assign(Object.create(this) as object, ATTEMPT_CALLBACKS);
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
  verify(verification: TokenVerification): AgentContext | Promise<AgentContext> {
    const attempt = Object.create(this.attempts) as Attempt;
    try {
      attempt.authenticate(verification, {});
    } catch (error) {
      finish(attempt, { error });
    }
    const { outcome } = attempt;
    if (outcome !== undefined) return agentOf(outcome);
    return new Promise((resolve, reject) => {
      attempt.settle = (result) => ('agent' in result ? resolve(result.agent) : reject(result.error));
    });
  }

  /**
   * Header rules first, then the zone, then key selection: nothing of the token reaches the network
   * (INV6). With several zones the unverified `iss` picks the zone from the exact allow-list, so an
   * unknown issuer is refused before any fetch and only its own zone's keys can verify a token (C23);
   * with one zone `iss` is checked after the signature, like every claim. Answers `done` at once
   * when the key store knows the key, so the signature is checked in the same tick. The "key" it
   * answers with is `verification` itself, holding the key: passport-jwt's verifier for this
   * module's tokens reads the decoded token and the key from it.
   */
  private provideKey(verification: TokenVerification, done: KeyCallback): void {
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

  private selectKey(verification: TokenVerification): VerificationKey | Promise<VerificationKey> {
    const jws = decodeJws(verification.token, this.signedHeaders.lookup);
    verification.jws = jws;
    const { alg, kid } = checkHeader(jws.header, this.options);
    const zone = this.zones.only ?? this.zones.forIssuer(this.unverifiedIssuer(verification));
    if (zone === undefined) throw new InvalidTokenException('issuer_mismatch');
    if (!zone.serves(verification.resource.id)) throw new InvalidTokenException('audience_mismatch');
    verification.zone = zone;
    return zone.keys.keyFor(kid, alg);
  }

  /**
   * The payload's `iss`, read before the signature only to pick the trusted zone whose keys must
   * then verify it (RFC 8725 §3.8); the parsed payload is kept so it is parsed once. Undefined
   * (refused `issuer_mismatch`) when the payload is not a JSON object or has no string `iss`.
   */
  private unverifiedIssuer(verification: TokenVerification): string | undefined {
    let claims: Record<string, unknown>;
    try {
      claims = parsePayload(verification.jws!.payload);
    } catch {
      return undefined;
    }
    verification.claimsBeforeSignature = claims;
    return typeof claims.iss === 'string' ? claims.iss : undefined;
  }

  /** Records the key on the verification (for the signature check and the verified-token cache) and hands the verification to passport-jwt's verifier. */
  private keyUsed(verification: TokenVerification, key: VerificationKey): string {
    verification.key = key;
    return verification as unknown as string;
  }

  /**
   * Called by passport-jwt with the claims whose signature its verifier checked. The header text of
   * that signature is kept (see {@link SignedHeaders}) whatever the claims then say: a zone signed it.
   */
  validate(request: unknown, payload: unknown): AgentContext {
    const verification = request as TokenVerification;
    const { jws } = verification;
    if (jws !== undefined && !jws.headerKnown) this.signedHeaders.remember(verification.token.slice(0, jws.headerLength), jws.header);
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
