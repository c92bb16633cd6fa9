import { Inject, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import type { Clock } from '../../clock.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../../keycard.constants.js';
import type { KeycardOptions } from '../../keycard-options.js';
import { logSafe } from '../../logging/log-safe.js';
import { JwksKeyStore } from '../../zone/jwks-key-store.js';
import type { ZoneMetadataService } from '../../zone/zone-metadata.service.js';
import { TrustedZones } from '../../zone/trusted-zones.js';
import { KEYCARD_REVOCATION_OPTIONS, type RevocationOptions } from '../revocation-options.js';
import type { Revocation } from '../revocation.js';
import { RevocationService } from '../revocation.service.js';
import { effectOf, type SetEffect } from './caep-events.js';
import type { SsfReceiverOptions } from './ssf-options.js';
import { SSF_DESCRIPTIONS as D, SsfError } from './ssf-error.js';
import { SetVerifier, type VerifiedSet } from './set-verifier.js';

/** What became of an accepted SET (answered 202 either way). */
export type SetOutcome = 'applied' | 'no_effect';

/**
 * Receives the zone's Shared Signals (SSF 1.0 with CAEP 1.0): verifies each Security Event Token
 * ({@link SetVerifier}), accepts each `jti` once across instances (a transmitter retrying through
 * a load balancer gets 202 again, with no second effect; another SET reusing the `jti` is refused),
 * and applies its effect to the revocation list (decision Q34). Both delivery methods hand it the
 * SET's text: the push endpoint (RFC 8935) and the poller (RFC 8936).
 * @publicApi
 */
@Injectable()
export class SsfReceiver {
  private readonly settings?: SsfReceiverOptions;
  private readonly verifier?: SetVerifier;
  private requestedState?: string;

  constructor(
    @Inject(KEYCARD_REVOCATION_OPTIONS) options: RevocationOptions,
    @Inject(KEYCARD_OPTIONS) private readonly keycard: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
    zones: TrustedZones,
    private readonly revocations: RevocationService,
  ) {
    this.settings = options.ssf;
    if (this.settings === undefined) return;
    const issuer = this.settings.issuer ?? keycard.issuer;
    this.verifier = new SetVerifier({
      issuer,
      audience: this.settings.audience,
      algorithms: keycard.algorithms,
      keyFor: transmitterKeys(this.settings, issuer, { zones, keycard, clock }),
      clock,
      toleranceMs: keycard.clockToleranceSeconds * 1000,
      maxAgeMs: revocations.entryLifetimeMs,
    });
  }

  /** True when the `ssf` option is set. */
  get enabled(): boolean {
    return this.verifier !== undefined;
  }

  /**
   * The `state` this receiver asked the transmitter to echo in its next verification event (SSF
   * 1.0 §8.1.4.1): call it when requesting verification. A verification event with another
   * `state` is then refused `invalid_state`.
   */
  expectVerification(state: string): void {
    this.requestedState = state;
  }

  /**
   * Verifies and applies one SET.
   * @throws SsfError (answered 400 with its code); anything else means the SET could not be judged now (503, the transmitter retries).
   */
  async receive(text: string): Promise<SetOutcome> {
    if (this.verifier === undefined) throw new SsfError('invalid_request', D.stream);
    const set = await this.verifier.verify(text);
    if (set.stale) {
      this.keycard.logger.log(`ssf_set_stale jti=${logSafe(set.jti)}: every token it could match has expired`);
      return 'no_effect';
    }
    const effect = effectOf(set, { tokenIssuer: this.settings!.tokenIssuer ?? this.keycard.issuer, latestMs: this.clock.now() + this.keycard.clockToleranceSeconds * 1000 });
    this.checkStream(effect);
    const claim = await this.revocations.claimOnce(set.jti, createHash('sha256').update(text).digest('base64url'));
    if (claim === 'different') throw new SsfError('invalid_request', D.replay);
    if (claim === 'same') return 'no_effect';
    return this.apply(set, effect);
  }

  /** Refused before the `jti` is claimed: a verification event for another stream, or with the wrong state. */
  private checkStream(effect: SetEffect): void {
    if (effect.kind !== 'verification') return;
    if (effect.streamId !== this.settings!.streamId) throw new SsfError('invalid_request', D.stream);
    if (this.requestedState !== undefined && effect.state !== this.requestedState) throw new SsfError('invalid_state', D.state);
  }

  private async apply(set: VerifiedSet, effect: SetEffect): Promise<SetOutcome> {
    switch (effect.kind) {
      case 'revoke':
        for (const revocation of effect.revocations) await this.revokeFrom(revocation, set);
        return 'applied';
      case 'verification':
        this.requestedState = undefined;
        this.revocations.verified(new Date(this.clock.now()));
        return 'no_effect';
      case 'stream':
        this.revocations.setDegraded('ssf_stream_paused', effect.status !== 'enabled');
        return 'no_effect';
      case 'none':
        this.keycard.logger.log(`${effect.log} type=${logSafe(set.eventType)} jti=${logSafe(set.jti)}`);
        return 'no_effect';
    }
  }

  /**
   * A SET's revocation: one whose target the list cannot hold (a TypeError of the service) is the
   * SET's fault, answered `invalid_request`, never 503, which a transmitter retries for ever.
   */
  private async revokeFrom(revocation: Revocation, set: VerifiedSet): Promise<void> {
    try {
      await this.revocations.revokeFromSet(revocation, set);
    } catch (error) {
      if (error instanceof TypeError) throw new SsfError('invalid_request', D.events);
      throw error;
    }
  }
}

/** The transmitter's keys: its own `jwksUri` when configured, else the keys of the zone that is the transmitter. */
function transmitterKeys(
  settings: SsfReceiverOptions,
  issuer: string,
  parts: { zones: TrustedZones; keycard: KeycardOptions; clock: Clock },
): ConstructorParameters<typeof SetVerifier>[0]['keyFor'] {
  if (settings.jwksUri !== undefined) {
    // The key store reads the set's location from metadata: a configured transmitter has a fixed one.
    const fixed = { issuer, jwksUri: settings.jwksUri, document: {} };
    const metadata = { get: () => Promise.resolve(fixed), fresh: () => fixed } as unknown as ZoneMetadataService;
    const store = new JwksKeyStore(metadata, parts.keycard, parts.clock);
    return async (kid, alg) => store.keyFor(kid, alg);
  }
  const zone = parts.zones.forIssuer(issuer);
  if (zone === undefined) {
    throw new TypeError("KeycardRevocationModule: 'ssf.issuer' is not a trusted zone; give the transmitter's 'ssf.jwksUri'");
  }
  return async (kid, alg) => zone.keys.keyFor(kid, alg);
}
