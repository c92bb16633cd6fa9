import { Inject, Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import { type ClientAuthentication, type ClientAuthenticationParts, credentialsRotated } from '../exchange/client-authentication.js';
import { BoundedCache } from '../exchange/bounded-cache.js';
import { tokenFingerprint } from '../exchange/token-fingerprint.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS, MAX_BODY_BYTES } from '../keycard.constants.js';
import { jsonObjectOf, postAuthenticated } from '../exchange/authenticated-post.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { ResourceNotConfiguredException, ZoneUnavailableException } from '../resource-server/keycard.exceptions.js';
import { SingleFlight } from '../single-flight.js';
import { TokenExchangeError } from '../exchange/token-exchange.error.js';
import { WorkloadTokenFileError } from '../exchange/workload-token-source.js';
import { beforeAbort, DeadlineExceededError } from '../within-deadline.js';
import { readCappedText } from '../zone/zone-fetch.js';
import type { TrustedZone } from '../zone/trusted-zones.js';
import { IntrospectionOutcomes, type IntrospectionHealth } from './introspection-health.js';

/**
 * One RFC 7662 §2.2 answer, as the zone gave it: `active`, and every member (frozen) — `exp`,
 * `iat`, `aud`, `iss`, `sub`, `client_id`, `scope`, `cnf` … are read by whoever judges it.
 */
export interface IntrospectionAnswer {
  readonly active: boolean;
  readonly members: Readonly<Record<string, unknown>>;
}

/** Absolute budget of one introspection, authentication and body included, in ms (catalogue X32). */
export const INTROSPECTION_DEADLINE_MS = 5_000;
/** `Retry-After` of a 503 while the zone cannot answer, in seconds. */
const RETRY_AFTER_SECONDS = 5;
/** The same failure of a zone is logged at most once per this many ms. */
const LOG_INTERVAL_MS = 60_000;

/** One introspection: the token, the zone's endpoint, this service's authentication, the absolute deadline. */
interface IntrospectionRequest {
  readonly token: string;
  readonly endpoint: string;
  readonly auth: ClientAuthentication;
  readonly deadline: AbortSignal;
}

/** Why an introspection could not be had: logged (never the token), answered 503. */
class Unanswered extends Error {}

/**
 * Asks a zone's `introspection_endpoint` about a token (RFC 7662 §2.1): a POST whose form carries
 * the token (never the URL), `token_type_hint=access_token` and this service's client
 * authentication, exactly as the token exchange authenticates ({@link ClientAuthentication} of the
 * zone's `clientCredentials`). No redirect is followed, the whole exchange has 5 s, the body is
 * capped at 1 MiB. Identical concurrent questions are asked once ({@link SingleFlight}, X34).
 *
 * Answers are reused only when `introspection.maxAgeSeconds` allows (off by default, Q36): keyed
 * by the zone and a fingerprint of the token (never the token itself), only `active` answers with
 * an `exp`, and never past that `exp` (X31). A reused answer is a set of facts, not a verdict: each
 * call judges it again for its own resource and requirement (X30).
 *
 * Failures (X32): unreachable, timed out, redirected, any status but 200 (other than our
 * credentials being refused), a body that is not a JSON object, or `active` that is not a boolean
 * → {@link ZoneUnavailableException} (503 + `Retry-After`), never cached; `invalid_client` (our
 * credentials refused; once retried after a credential rotation, as the exchange does) → 500, with
 * one error log line per minute and zone. No token or credential is ever logged.
 */
@Injectable()
export class IntrospectionClient {
  private readonly cache: BoundedCache<IntrospectionAnswer> | undefined;
  private readonly flights = new SingleFlight<IntrospectionAnswer>();
  /** When each zone's failure was last logged, by zone issuer and kind. */
  private readonly loggedAt = new Map<string, number>();
  /** Whether each zone's endpoint answered last time, for the health indicator. */
  private readonly outcomes = new IntrospectionOutcomes();

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    const { maxAgeMs, cacheSize } = options.introspection;
    this.cache = maxAgeMs > 0 && cacheSize > 0 ? new BoundedCache(cacheSize, () => clock.now()) : undefined;
  }

  /**
   * The zone's answer about `token`: a reusable one kept, the request under way, or a new POST.
   * @throws (rejects with) ZoneUnavailableException (503) or ResourceNotConfiguredException (500), per the list above.
   */
  answer(token: string, zone: TrustedZone): IntrospectionAnswer | Promise<IntrospectionAnswer> {
    const key = `${zone.issuer}\n${tokenFingerprint(token)}`;
    const kept = this.cache?.get(key);
    if (kept !== undefined) return kept;
    return this.flights.run(key, async () => {
      const answer = await this.ask(token, zone);
      this.keep(key, answer);
      return answer;
    });
  }

  /**
   * Whether `zone`'s introspection endpoint answered the last time it was asked: `degraded` with
   * the failure's fixed description from a failure until the next answer; `undefined` before the
   * zone was ever asked (no route introspected yet).
   */
  health(zone: TrustedZone): IntrospectionHealth | undefined {
    return this.outcomes.of(zone.issuer);
  }

  /**
   * Asks `zone`'s endpoint about a random string that is no token (RFC 7662 §2.2: the answer is
   * `{"active": false}`), so a degraded endpoint is seen to recover without waiting for a call
   * that demands freshness. Updates {@link health}; never rejects, never cached.
   */
  async probe(zone: TrustedZone): Promise<IntrospectionHealth | undefined> {
    await this.ask(`keycard-health-probe-${randomBytes(12).toString('base64url')}`, zone).catch(() => undefined);
    return this.health(zone);
  }

  /** Until `maxAgeSeconds` from now, never past the answer's `exp`; not at all without one (X31). */
  private keep(key: string, answer: IntrospectionAnswer): void {
    const exp = answer.members.exp;
    if (this.cache === undefined || !answer.active || typeof exp !== 'number' || !Number.isFinite(exp)) return;
    this.cache.set(key, answer, Math.min(this.clock.now() + this.options.introspection.maxAgeMs, exp * 1000));
  }

  private async ask(token: string, zone: TrustedZone): Promise<IntrospectionAnswer> {
    const auth = zone.clientAuthentication;
    if (auth === undefined) throw this.misconfigured(zone, "no 'clientCredentials' are configured for it (RFC 7662 §2.1 requires client authentication)");
    const endpoint = (await this.metadataOf(zone)).introspectionEndpoint;
    if (endpoint === undefined) throw this.misconfigured(zone, 'its metadata publishes no usable introspection_endpoint');
    const deadline = AbortSignal.timeout(INTROSPECTION_DEADLINE_MS);
    try {
      const answer = await this.post({ token, endpoint, auth, deadline }, zone);
      this.outcomes.answered(zone.issuer);
      return answer;
    } catch (error) {
      if (!(error instanceof Unanswered)) throw error;
      this.outcomes.failed(zone.issuer, error.message, this.clock.now());
      this.logOnce(zone, 'unavailable', () => this.options.logger.warn(`Zone ${logSafe(zone.issuer)}: token introspection failed (${error.message}); freshness routes answer 503`));
      throw new ZoneUnavailableException(RETRY_AFTER_SECONDS);
    }
  }

  /** One POST, and one more after `invalid_client` when the credentials rotated (catalogue I7). */
  private async post(request: IntrospectionRequest, zone: TrustedZone): Promise<IntrospectionAnswer> {
    for (let retried = false; ; retried = true) {
      // Fresh per POST, and kept: an invalid_client is judged against what this POST sent (another
      // request may have read rotated credentials since, I7).
      const credentials = await this.credentialsOf(request, zone);
      const response = await this.send(request, credentials);
      if (isRefusedClient(response)) {
        await response.response.body?.cancel().catch(() => undefined);
        if (!retried && (await beforeIntrospectionDeadline(credentialsRotated(request.auth, credentials, request.deadline), request.deadline))) continue;
        throw this.misconfigured(zone, `its introspection endpoint refused our client credentials (HTTP ${response.response.status} invalid_client)`);
      }
      return this.read(response.response, response.json);
    }
  }

  /** The client credentials for one POST, read within the request's deadline. */
  private async credentialsOf(request: IntrospectionRequest, zone: TrustedZone): Promise<ClientAuthenticationParts> {
    const { endpoint, auth, deadline } = request;
    try {
      // Within the deadline: a source that never answers must not hold the request (and every one
      // joined to its introspection) for ever.
      return await beforeIntrospectionDeadline(auth.authenticate(endpoint), deadline);
    } catch (error) {
      if (error instanceof Unanswered) throw error;
      // A source that is down for now (a metadata server answering 503, a token file not mounted
      // yet or being rotated: I5, I6): retry later, as the exchange says.
      if (error instanceof WorkloadTokenFileError) throw new Unanswered(`the client credentials are unavailable for now (${error.message})`);
      if (error instanceof TokenExchangeError && error.retryable) throw new Unanswered('the client credentials are unavailable for now (workload token source)');
      // A workload identity source that cannot give its token: no request can be authenticated.
      throw this.misconfigured(zone, 'the client credentials could not be read (clientCredentials)');
    }
  }

  private async send(request: IntrospectionRequest, credentials: ClientAuthenticationParts): Promise<{ response: Response; json?: Record<string, unknown> }> {
    const { token, endpoint, deadline } = request;
    let response: Response;
    try {
      response = await postAuthenticated({ fetch: this.options.fetch, endpoint, form: { token, token_type_hint: 'access_token' }, credentials, signal: deadline });
    } catch {
      throw new Unanswered(deadline.aborted ? `no answer within ${INTROSPECTION_DEADLINE_MS} ms` : 'the endpoint could not be reached');
    }
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel().catch(() => undefined);
      throw new Unanswered(`the endpoint redirected (HTTP ${response.status}); not followed`);
    }
    let text: string;
    try {
      text = await readCappedText(response, MAX_BODY_BYTES);
    } catch {
      throw new Unanswered(deadline.aborted ? `no answer within ${INTROSPECTION_DEADLINE_MS} ms` : 'the answer was cut off or over 1 MiB');
    }
    return { response, json: jsonObjectOf(response, text) };
  }

  /** RFC 7662 §2.2: a 200 JSON object whose `active` is a boolean; anything else is no answer. */
  private read(response: Response, json: Record<string, unknown> | undefined): IntrospectionAnswer {
    if (response.status !== 200) throw new Unanswered(`HTTP ${response.status}`);
    if (json === undefined) throw new Unanswered('the answer is not a JSON object');
    if (typeof json.active !== 'boolean') throw new Unanswered("the answer's active member is not a boolean");
    return Object.freeze({ active: json.active, members: deepFreeze(json) });
  }

  private async metadataOf(zone: TrustedZone): ReturnType<TrustedZone['metadata']['get']> {
    try {
      return await zone.metadata.get();
    } catch (error) {
      this.outcomes.failed(zone.issuer, 'the zone metadata cannot be read', this.clock.now());
      throw error;
    }
  }

  /** 500, and an error line once per minute and zone: an operator must fix the configuration. */
  private misconfigured(zone: TrustedZone, why: string): ResourceNotConfiguredException {
    this.outcomes.failed(zone.issuer, why, this.clock.now());
    this.logOnce(zone, 'misconfigured', () =>
      this.options.logger.error(`Keycard token introspection at zone ${logSafe(zone.issuer)} is misconfigured: ${why}. Routes that introspect answer 500 until it is fixed`),
    );
    return new ResourceNotConfiguredException('zone_misconfigured');
  }

  private logOnce(zone: TrustedZone, kind: string, log: () => void): void {
    const key = `${kind}\n${zone.issuer}`;
    const now = this.clock.now();
    if (now - (this.loggedAt.get(key) ?? -Infinity) < LOG_INTERVAL_MS) return;
    this.loggedAt.set(key, now);
    log();
  }
}

/** RFC 6749 §5.2: our credentials refused (`invalid_client`, 401 or 400), or a bare 401. */
function isRefusedClient({ response, json }: { response: Response; json?: Record<string, unknown> }): boolean {
  return response.status === 401 || (response.status === 400 && json?.error === 'invalid_client');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}

/** `work`, or no answer once the request's deadline passes first (a credential source that never answers). */
async function beforeIntrospectionDeadline<T>(work: Promise<T>, deadline: AbortSignal): Promise<T> {
  try {
    return await beforeAbort(work, deadline);
  } catch (error) {
    if (error instanceof DeadlineExceededError) throw new Unanswered(`the client credentials were not ready within ${INTROSPECTION_DEADLINE_MS} ms`);
    throw error;
  }
}
