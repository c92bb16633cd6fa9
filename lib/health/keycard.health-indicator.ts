import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type { Clock } from '../clock.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { fetchZoneJson, ZoneFetchError } from '../zone/zone-fetch.js';
import { TrustedZones, type TrustedZone } from '../zone/trusted-zones.js';

/** What one zone's check found. */
interface ZoneHealth {
  readonly up: boolean;
  readonly issuer: string;
  readonly keys?: number;
  readonly keysAgeSeconds: number | null;
  readonly reason?: string;
}

/**
 * `@nestjs/terminus` health indicator of the Keycard zone. Each check asks the zone now, with the
 * module's fetch rules (5 s deadline, 1 MiB cap, no redirects): its metadata (RFC 8414, issuer
 * equal to `zoneUrl`, same-origin `jwks_uri`) and its JWKS (a JSON Web Key Set) must answer.
 * It reports the age of the keys the guard verifies with. With several zones (`zones` option) every
 * zone is checked, and the indicator is up only when all are (`zones` lists each one's result).
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
    private readonly zones: TrustedZones,
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
    const results = await Promise.all(this.zones.all.map((zone) => this.check(zone)));
    const data = (result: ZoneHealth) => {
      const { up: _up, ...rest } = result;
      return rest;
    };
    const body: Record<string, unknown> = results.length === 1 ? data(results[0]) : { zones: results.map((result) => ({ status: result.up ? 'up' : 'down', ...data(result) })) };
    return results.every((result) => result.up) ? indicator.up(body) : indicator.down(body);
  }

  private async check(zone: TrustedZone): Promise<ZoneHealth> {
    const fetchedAt = zone.keys.keysFetchedAt;
    const keysAgeSeconds = fetchedAt === undefined ? null : Math.round((this.clock.now() - fetchedAt) / 1000);
    const issuer = zone.issuer;
    try {
      const metadata = await zone.metadata.probe();
      const jwks = (await fetchZoneJson(this.options.fetch, metadata.jwksUri)) as { keys?: unknown } | null;
      if (!Array.isArray(jwks?.keys)) throw new ZoneFetchError('the zone key set is not a JSON Web Key Set');
      return { up: true, issuer, keys: jwks.keys.length, keysAgeSeconds };
    } catch (error) {
      const reason = error instanceof ZoneFetchError || error instanceof TypeError ? error.message : 'zone unreachable';
      return { up: false, issuer, reason, keysAgeSeconds };
    }
  }
}
