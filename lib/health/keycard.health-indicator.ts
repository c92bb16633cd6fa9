import { Inject, Injectable, Optional } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { TokenValidators } from '../decision/token-validator.js';
import { HealthIndicatorService } from '@nestjs/terminus';
import { IntrospectionClient } from '../introspection/introspection.client.js';
import type { IntrospectionHealth } from '../introspection/introspection-health.js';
import { RevocationService } from '../revocation/revocation.service.js';
import type { Clock } from '../clock.js';
import { FETCH_TIMEOUT_MS, KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { fetchZoneJson, ZoneFetchError } from '../zone/zone-fetch.js';
import { TrustedZones, type TrustedZone } from '../zone/trusted-zones.js';
import { KeptAnswer } from './kept-answer.js';
import { healthCacheWindows, KEYCARD_HEALTH_OPTIONS, type HealthCacheWindows, type KeycardHealthOptions } from './keycard-health-options.js';

/** What one zone answered: reachable with its key count, or not with a reason. */
type ZoneAnswer = { readonly up: true; readonly keys: number } | { readonly up: false; readonly reason: string };

/** What one zone's check found. */
type ZoneHealth = ZoneAnswer & { readonly issuer: string; readonly keysAgeSeconds: number | null; readonly introspection?: IntrospectionHealth };

/** The module's parts the indicator reports on when the app has them (looked up once, outside the module's exports). */
interface Reported {
  readonly validators?: TokenValidators;
  readonly introspection?: IntrospectionClient;
  readonly revocations?: RevocationService;
}

/**
 * `@nestjs/terminus` health indicator of the Keycard zone. A check asks the zone, with the module's
 * fetch rules (no redirects, 1 MiB cap) and one 5 s deadline for the whole check: its metadata
 * (RFC 8414, issuer equal to `zoneUrl`, same-origin `jwks_uri`) and its JWKS (a JSON Web Key Set)
 * must answer. It reports the age of the keys the guard verifies with. With several zones (`zones`
 * option) every zone is checked, and the indicator is up only when all are (`zones` lists each
 * one's result).
 *
 * The zone's answer is kept (decision Q23): `up` for 10 s, `down` for 2 s by default (see
 * {@link KeycardHealthOptions}, provided under `KEYCARD_HEALTH_OPTIONS`), and checks that arrive
 * while the zone is being asked share that one round trip, so a probe storm on a public `/health`
 * costs the zone at most one metadata and one JWKS request per window. Time is the module's clock
 * (`KEYCARD_CLOCK`). `keysAgeSeconds` is read on every check.
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
 * @throws TypeError at bootstrap when a window in `KEYCARD_HEALTH_OPTIONS` is not a finite number ≥ 0.
 * @publicApi
 */
@Injectable()
export class KeycardHealthIndicator {
  private readonly windows: HealthCacheWindows;
  private readonly answers = new Map<TrustedZone, KeptAnswer<ZoneAnswer>>();
  /** The probe of each zone's degraded introspection endpoint, kept for the failure window. */
  private readonly probes = new Map<TrustedZone, KeptAnswer<IntrospectionHealth | undefined>>();
  private reported?: Reported;

  constructor(
    private readonly health: HealthIndicatorService,
    private readonly zones: TrustedZones,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
    private readonly moduleRef: ModuleRef,
    @Optional() @Inject(KEYCARD_HEALTH_OPTIONS) healthOptions?: KeycardHealthOptions,
  ) {
    this.windows = healthCacheWindows(healthOptions);
  }

  /**
   * @param key the key of this indicator in the health result. @default 'keycard'
   * @returns `{ [key]: { status: 'up', issuer, keys, keysAgeSeconds } }`, or `status: 'down'` with
   * `reason` (never a token or secret). `keys` counts the JWKS entries; `keysAgeSeconds` is the age of
   * the keys in use (`null` before the first verification fetched them). With DPoP on,
   * `dpopReplayStore` is `memory`, `shared` or `degraded` (the shared store fails; the zone's status
   * is not changed by it: proofs are still verified). Once a call introspected a token at a zone,
   * that zone has `introspection`: `{ status: 'up' }`, or `{ status: 'degraded', reason, since }`
   * from a failure of its introspection endpoint until it answers again (routes that demand
   * freshness answer 503 meanwhile; the endpoint is asked again at most once per `down` window, with
   * a random string that is no token). With `KeycardRevocationModule`, `revocation` is
   * `{ status: 'up' | 'degraded', reasons, entries, lastVerifiedAt? }` (see `RevocationStatus`).
   * Neither changes the indicator's status: the zone's keys still verify and other routes are served.
   */
  async isHealthy<const Key extends string = 'keycard'>(key: Key = 'keycard' as Key) {
    const indicator = this.health.check(key);
    const results = await Promise.all(this.zones.all.map((zone) => this.check(zone)));
    const data = (result: ZoneHealth) => {
      const { up: _up, ...rest } = result;
      return rest;
    };
    const body: Record<string, unknown> = results.length === 1 ? data(results[0]) : { zones: results.map((result) => ({ status: result.up ? 'up' : 'down', ...data(result) })) };
    const { validators, revocations } = this.parts();
    // DPoP's shared replay store: `degraded` while it fails and each instance remembers proofs alone (catalogue H18).
    const dpop = validators?.dpop;
    if (dpop !== undefined) body.dpopReplayStore = dpop.replayStore;
    // The revocation list: `degraded` while a source cannot vouch for it (Q35); freshness routes answer 503 meanwhile.
    if (revocations !== undefined) body.revocation = revocationHealth(revocations);
    return results.every((result) => result.up) ? indicator.up(body) : indicator.down(body);
  }

  private async check(zone: TrustedZone): Promise<ZoneHealth> {
    const [answer, introspection] = await Promise.all([this.answerOf(zone).get(), this.introspectionOf(zone)]);
    const fetchedAt = zone.keys.keysFetchedAt;
    const keysAgeSeconds = fetchedAt === undefined ? null : Math.round((this.clock.now() - fetchedAt) / 1000);
    return introspection === undefined ? { ...answer, issuer: zone.issuer, keysAgeSeconds } : { ...answer, issuer: zone.issuer, keysAgeSeconds, introspection };
  }

  /**
   * The zone's introspection endpoint as the last call found it (absent before any call asked it);
   * while degraded, asked again at most once per failure window, so it is seen to recover without
   * waiting for a freshness call (which clients may have stopped making after their 503s).
   */
  private async introspectionOf(zone: TrustedZone): Promise<IntrospectionHealth | undefined> {
    const client = this.parts().introspection;
    const last = client?.health(zone);
    if (client === undefined || last?.status !== 'degraded') return last;
    let probe = this.probes.get(zone);
    if (probe === undefined) {
      probe = new KeptAnswer({ ask: () => client.probe(zone), keepMs: (found) => (found?.status === 'degraded' ? this.windows.downMs : 0), now: () => this.clock.now() });
      this.probes.set(zone, probe);
    }
    await probe.get();
    // The latest outcome, not the probe's: a call may have found the endpoint since (or failed otherwise).
    return client.health(zone);
  }

  /** The optional parts, looked up once: a part the app does not have is left out of the answer. */
  private parts(): Reported {
    this.reported ??= {
      validators: this.optional(TokenValidators),
      introspection: this.optional(IntrospectionClient),
      revocations: this.optional(RevocationService),
    };
    return this.reported;
  }

  private optional<T>(type: new (...args: never[]) => T): T | undefined {
    try {
      return this.moduleRef.get(type, { strict: false });
    } catch {
      return undefined;
    }
  }

  private answerOf(zone: TrustedZone): KeptAnswer<ZoneAnswer> {
    let answer = this.answers.get(zone);
    if (!answer) {
      answer = new KeptAnswer({
        ask: () => this.ask(zone),
        keepMs: (kept) => (kept.up ? this.windows.upMs : this.windows.downMs),
        now: () => this.clock.now(),
      });
      this.answers.set(zone, answer);
    }
    return answer;
  }

  /** Asks the zone once, within one deadline for metadata and JWKS together. Never rejects. */
  private async ask(zone: TrustedZone): Promise<ZoneAnswer> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<ZoneAnswer>((resolve) => {
      timer = setTimeout(() => resolve({ up: false, reason: `the zone did not answer within ${FETCH_TIMEOUT_MS / 1000} s` }), FETCH_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.probe(zone), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async probe(zone: TrustedZone): Promise<ZoneAnswer> {
    try {
      const metadata = await zone.metadata.probe();
      const jwks = (await fetchZoneJson(this.options.fetch, metadata.jwksUri)) as { keys?: unknown } | null;
      if (!Array.isArray(jwks?.keys)) throw new ZoneFetchError('the zone key set is not a JSON Web Key Set');
      return { up: true, keys: jwks.keys.length };
    } catch (error) {
      const reason = error instanceof ZoneFetchError || error instanceof TypeError ? error.message : 'zone unreachable';
      return { up: false, reason };
    }
  }
}

/** The revocation list's state, JSON-ready: `lastVerifiedAt` (an SSF verification event) only once there was one. */
function revocationHealth(revocations: RevocationService): Record<string, unknown> {
  const { status, reasons, entries, lastVerifiedAt } = revocations.status();
  return lastVerifiedAt === undefined ? { status, reasons, entries } : { status, reasons, entries, lastVerifiedAt: lastVerifiedAt.toISOString() };
}
