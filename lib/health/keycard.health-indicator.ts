import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type { Clock } from '../clock.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { JwksKeyStore } from '../zone/jwks-key-store.js';
import { fetchZoneJson, ZoneFetchError } from '../zone/zone-fetch.js';
import { ZoneMetadataService } from '../zone/zone-metadata.service.js';

/**
 * `@nestjs/terminus` health indicator of the Keycard zone. Each check asks the zone now, with the
 * module's fetch rules (5 s deadline, 1 MiB cap, no redirects): its metadata (RFC 8414, issuer
 * equal to `zoneUrl`, same-origin `jwks_uri`) and its JWKS (a JSON Web Key Set) must answer.
 * It reports the age of the keys the guard verifies with.
 *
 * `down` means the zone cannot be reached now; the guard still verifies with cached keys for up to
 * 70 minutes (10 min cache + 60 min while the zone fails), so use it for alerting or a status page
 * rather than as a readiness gate that would take every replica out during a zone blip.
 *
 * @example
 * ```ts
 * @Module({ imports: [TerminusModule], controllers: [HealthController], providers: [KeycardHealthIndicator] })
 * // in HealthController: @Public() @Get('health') @HealthCheck()
 * // check() { return this.health.check([() => this.keycard.isHealthy()]); }
 * ```
 * @publicApi
 */
@Injectable()
export class KeycardHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly zone: ZoneMetadataService,
    private readonly keys: JwksKeyStore,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {}

  /**
   * @param key the key of this indicator in the health result. @default 'keycard'
   * @returns `{ [key]: { status: 'up', issuer, keys, keysAgeSeconds } }`, or `status: 'down'` with
   * `reason` (never a token or secret). `keys` counts the JWKS entries; `keysAgeSeconds` is the age of
   * the keys in use (`null` before the first verification fetched them).
   */
  async isHealthy<const Key extends string = 'keycard'>(key: Key = 'keycard' as Key) {
    const indicator = this.health.check(key);
    const fetchedAt = this.keys.keysFetchedAt;
    const keysAgeSeconds = fetchedAt === undefined ? null : Math.round((this.clock.now() - fetchedAt) / 1000);
    const issuer = this.options.issuer;
    try {
      const metadata = await this.zone.probe();
      const jwks = (await fetchZoneJson(this.options.fetch, metadata.jwksUri)) as { keys?: unknown } | null;
      if (!Array.isArray(jwks?.keys)) throw new ZoneFetchError('the zone key set is not a JSON Web Key Set');
      return indicator.up({ issuer, keys: jwks.keys.length, keysAgeSeconds });
    } catch (error) {
      const reason = error instanceof ZoneFetchError || error instanceof TypeError ? error.message : 'zone unreachable';
      return indicator.down({ issuer, reason, keysAgeSeconds });
    }
  }
}
