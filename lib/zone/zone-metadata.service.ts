import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import {
  CACHE_MAX_AGE_MS, KEYCARD_CLOCK, KEYCARD_OPTIONS, RETRY_MAX_MS, RETRY_MIN_MS, RETRY_ON_DEMAND_FLOOR_MS, STALE_IF_ERROR_MS,
} from '../keycard.constants.js';
import { ZoneUnavailableException } from '../resource-server/keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { isLoopbackHost } from '../loopback.js';
import type { Clock } from '../clock.js';
import { LOG_MESSAGE_MAX_LENGTH, logSafe } from '../logging/log-safe.js';
import { ONCE_PER_INTERVAL_NOTE, OncePerInterval } from '../logging/once-per-interval.js';
import { RefreshingValue } from './refreshing-value.js';
import { fetchZoneMetadataDocument, ZoneFetchError } from './zone-fetch.js';

/** The parts of the zone's RFC 8414 document the module relies on, validated. */
export interface ZoneMetadata {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly tokenEndpoint?: string;
  /** RFC 8414 §2 / RFC 7662 §4 `introspection_endpoint`, when the zone publishes a usable one (same origin). */
  readonly introspectionEndpoint?: string;
  /** The document as the zone served it, mirrored by the discovery controller. */
  readonly document: Readonly<Record<string, unknown>>;
}

/**
 * Discovers the zone (RFC 8414, then OIDC discovery) and keeps its metadata fresh. The app boots
 * while the zone is down: a background loop retries with capped exponential back-off, and requests
 * meanwhile get 503 + Retry-After (catalogue F1); a request also retries on demand, at most once per
 * {@link RETRY_ON_DEMAND_FLOOR_MS}, so a zone that is back serves the next request (U16). A document whose `issuer` differs from the
 * configured zone by a single code point is never used (F2).
 */
@Injectable()
export class ZoneMetadataService implements OnModuleInit, OnModuleDestroy {
  private readonly metadata: RefreshingValue<ZoneMetadata>;
  private retryTimer?: NodeJS.Timeout;
  /** The background retry's next delay: doubles with every failure, of whatever kind, until a success. */
  private retryDelayMs = RETRY_MIN_MS;
  /** The next delay before requests may ask again about a configuration error: restarts at 1 s with each new kind of failure. */
  private gateDelayMs = RETRY_MIN_MS;
  private nextRetryAt = 0;
  private destroyed = false;
  /** The discovery started at boot, for the boot check (never a second fetch). */
  private firstAttempt?: Promise<ZoneMetadata>;
  /** The last failure, when it was a configuration error: requests are told so (503, not "retry later"). */
  private misconfigured?: ZoneFetchError;
  /** A configuration error is logged once per interval, however often it recurs. */
  private readonly configErrorLog: OncePerInterval;

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    this.metadata = new RefreshingValue(() => this.attempt(), () => clock.now());
    this.configErrorLog = new OncePerInterval(clock);
  }

  onModuleInit(): void {
    if (this.firstAttempt || this.clock.now() < this.nextRetryAt) return;
    this.firstAttempt = this.metadata.load();
    this.firstAttempt.catch(() => undefined);
  }

  /**
   * The outcome of the discovery started at boot (joined, never repeated): the metadata, or what
   * failed. Starts one when the module was not initialised (a service used on its own).
   */
  async firstDiscovery(): Promise<{ metadata: ZoneMetadata } | { error: Error }> {
    this.onModuleInit();
    try {
      return { metadata: await (this.firstAttempt ?? this.metadata.load()) };
    } catch (error) {
      return { error: error instanceof Error ? error : new Error(String(error)) };
    }
  }

  onModuleDestroy(): void {
    this.destroyed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /**
   * Validated metadata, refreshed when older than the cache age. Throws
   * {@link ZoneUnavailableException} when no usable document can be had.
   */
  async get(): Promise<ZoneMetadata> {
    const last = this.metadata.last;
    const now = this.clock.now();
    if (last && now - last.loadedAt < CACHE_MAX_AGE_MS) return last.value;
    if (last && now - last.loadedAt < CACHE_MAX_AGE_MS + STALE_IF_ERROR_MS) {
      // Stale but inside the stale-if-error window: answer now, refresh behind the request (F10).
      this.refreshInBackground();
      return last.value;
    }
    if (this.metadata.failing && now < this.nextOnDemandAt()) throw this.unavailable();
    try {
      return await this.metadata.load();
    } catch {
      throw this.unavailable();
    }
  }

  /**
   * Fetches and validates the metadata now, bypassing (and not updating) the cache: a live check
   * for health probes. Throws what a discovery attempt throws (a `ZoneFetchError` or `TypeError`).
   */
  probe(): Promise<ZoneMetadata> {
    return this.discover();
  }

  /**
   * The metadata {@link get} would answer with at once (loaded less than the cache age ago), or
   * undefined when `get` has work to do: lets the key store answer without a promise.
   */
  fresh(): ZoneMetadata | undefined {
    const last = this.metadata.last;
    return last && this.clock.now() - last.loadedAt < CACHE_MAX_AGE_MS ? last.value : undefined;
  }

  /** The last validated metadata, if any, without triggering a load. */
  peek(): ZoneMetadata | undefined {
    return this.metadata.last?.value;
  }

  /**
   * When a request may next trigger a load while the zone fails (one at a time): an outage at most
   * once per floor interval, so a zone that is back serves the next request (U16); a configuration
   * error only when its back-off allows, as `Retry-After` says (F2: a zone that answers wrongly is
   * not asked again by every request).
   */
  private nextOnDemandAt(): number {
    const floor = this.metadata.attemptedAt + RETRY_ON_DEMAND_FLOOR_MS;
    return this.misconfigured ? Math.max(floor, this.nextRetryAt) : floor;
  }

  /** Retry-After: when {@link nextOnDemandAt} lets a request ask the zone again (at least 1 s: an outage's floor is shorter). */
  private unavailable(): ZoneUnavailableException {
    const retryAfter = Math.max(1, (this.nextOnDemandAt() - this.clock.now()) / 1000);
    return new ZoneUnavailableException(retryAfter, this.misconfigured ? 'zone_misconfigured' : 'zone_unavailable');
  }

  /** Starts a load unless one is under way or the back-off says wait; never rejects. */
  private refreshInBackground(): void {
    if (this.clock.now() < this.nextRetryAt) return;
    this.metadata.load().catch(() => undefined);
  }

  /**
   * One real discovery attempt. On failure the next attempt is scheduled after a back-off that
   * doubles up to its cap, so an unreachable zone sees at most one request per back-off step.
   */
  private async attempt(): Promise<ZoneMetadata> {
    clearTimeout(this.retryTimer);
    try {
      const metadata = await this.discover();
      this.retryDelayMs = this.gateDelayMs = RETRY_MIN_MS;
      this.nextRetryAt = 0;
      if (this.misconfigured) this.options.logger.log(`Zone ${this.options.issuer}: its metadata is valid again`);
      this.misconfigured = undefined;
      return metadata;
    } catch (error) {
      const wasMisconfigured = this.misconfigured !== undefined;
      this.reportFailure(error);
      // A new kind of failure starts the requests' wait again: after a long outage the cap is reached,
      // and a configuration error fixed a second later would otherwise wait up to 30 s (F2, U16).
      // The background retry keeps backing off, so a zone that flaps between kinds is not asked
      // every second forever.
      if (wasMisconfigured !== (this.misconfigured !== undefined)) this.gateDelayMs = RETRY_MIN_MS;
      this.nextRetryAt = this.clock.now() + this.gateDelayMs;
      this.gateDelayMs = Math.min(this.gateDelayMs * 2, RETRY_MAX_MS);
      if (this.destroyed) throw error;
      this.retryTimer = setTimeout(() => {
        this.nextRetryAt = 0;
        this.refreshInBackground();
      }, this.retryDelayMs);
      this.retryTimer.unref();
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
      throw error;
    }
  }

  /**
   * An outage is a warning per attempt (the back-off bounds them); a configuration error is an
   * error, naming what was expected and what was found, once per interval however often it recurs.
   */
  private reportFailure(error: unknown): void {
    const message = logSafe((error as Error).message, LOG_MESSAGE_MAX_LENGTH);
    if (!(error instanceof ZoneFetchError && error.configuration)) {
      this.misconfigured = undefined;
      this.options.logger.warn(`Zone ${this.options.issuer} unavailable, retrying in ${this.retryDelayMs} ms: ${message}`);
      return;
    }
    this.misconfigured = error;
    if (!this.configErrorLog.due()) return;
    this.options.logger.error(
      `Zone configuration error for zoneUrl ${this.options.issuer}: ${message}. Protected requests answer 503 until it is fixed (checked again with back-off; ${ONCE_PER_INTERVAL_NOTE})`,
    );
  }

  private async discover(): Promise<ZoneMetadata> {
    return this.validate(await fetchZoneMetadataDocument(this.options.fetch, this.options.issuer));
  }

  private validate(document: Record<string, unknown> & { issuer: string }): ZoneMetadata {
    const doc = document;
    const jwksUri = this.sameOriginUrl('jwks_uri', doc.jwks_uri, true)!;
    let tokenEndpoint: string | undefined;
    try {
      tokenEndpoint = this.sameOriginUrl('token_endpoint', doc.token_endpoint, false);
    } catch (error) {
      // Verification does not need the token endpoint: only the exchange is disabled (F12).
      this.options.logger.error(`Token exchange disabled: ${logSafe((error as Error).message, LOG_MESSAGE_MAX_LENGTH)}`);
    }
    return { issuer: doc.issuer, jwksUri, tokenEndpoint, introspectionEndpoint: this.optionalEndpoint('introspection_endpoint', doc.introspection_endpoint), document: Object.freeze({ ...doc }) };
  }

  /** An endpoint only some features need: unusable, it is left out (those features answer 503) and logged. */
  private optionalEndpoint(name: string, value: unknown): string | undefined {
    try {
      return this.sameOriginUrl(name, value, false);
    } catch (error) {
      this.options.logger.error(`Zone ${this.options.issuer}: ${name} not used: ${logSafe((error as Error).message, LOG_MESSAGE_MAX_LENGTH)}`);
      return undefined;
    }
  }

  /**
   * Endpoints must be on the zone's own origin: token content or a rogue document never steer us
   * elsewhere (E25, F12). What it throws is a configuration error: the document's `issuer` is the
   * zone's, so waiting will not change it (F4, E25: an error-level alert, requests wait for the back-off).
   */
  private sameOriginUrl(name: string, value: unknown, required: boolean): string | undefined {
    if (value === undefined && !required) return undefined;
    const configurationError = (message: string) => new ZoneFetchError(`zone metadata ${message}`, undefined, true);
    if (typeof value !== 'string') throw configurationError(`lacks a string ${name}`);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw configurationError(`${name} is not a URL`);
    }
    // Userinfo keeps the origin but no fetch accepts it, and it may be a secret: refused, never logged.
    if (url.username !== '' || url.password !== '') throw configurationError(`${name} carries userinfo`);
    const secure =
      url.protocol === 'https:' ||
      (url.protocol === 'http:' && (isLoopbackHost(url.hostname) || this.options.allowInsecureHttp));
    if (!secure || url.origin !== this.options.issuerUrl.origin) throw configurationError(`${name} ${logSafe(value)} is not on the zone's origin`);
    return value;
  }
}
