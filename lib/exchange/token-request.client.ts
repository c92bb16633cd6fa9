import { Inject, Injectable, type OnModuleDestroy, Optional } from '@nestjs/common';
import { createHash, randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../clock.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS, MAX_BODY_BYTES } from '../keycard.constants.js';
import { ZoneUnavailableException } from '../resource-server/keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { BodyTooLargeError, readCappedText } from '../zone/zone-fetch.js';
import { readUnverifiedIssuer } from '../resource-server/compact-jws.js';
import { TrustedZones, type TrustedZone } from '../zone/trusted-zones.js';
import { logSafe } from '../logging/log-safe.js';
import { SingleFlight } from '../single-flight.js';
import { beforeAbort, DeadlineExceededError } from '../within-deadline.js';
import { jsonObjectOf, postAuthenticated } from './authenticated-post.js';
import { KEYCARD_TRACE_CONTEXT, type TraceContextSource } from '../logging/trace-context.js';
import type { ExchangedEvent } from '../decision/decision-event-kinds.js';
import { DecisionEvents } from '../decision/decision-events.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { BoundedCache } from './bounded-cache.js';
import type { DpopBinding } from './dpop-binding.js';
import { type ClientAuthentication, type ClientAuthenticationParts, credentialsRotated } from './client-authentication.js';
import type { ExchangedToken } from './exchanged-token.interface.js';
import { servingIssuer } from './serving-zone.js';
import { SharedExchangeCache } from './shared-exchange-cache.js';
import { TokenExchangeError } from './token-exchange.error.js';

/** Absolute budget of one token request, retries and waits included, in ms (catalogue I19). */
const REQUEST_DEADLINE_MS = 5_000;
/** A cached token is dropped this long before it expires, in ms (catalogue I8). */
export const EXPIRY_MARGIN_MS = 30_000;
/** Subject tokens longer than this are not decoded (for their `iss` or `exp`). @internal */
export const MAX_DECODED_SUBJECT_LENGTH = 16 * 1024;
/** Longest `Retry-After` honoured with a retry, in seconds (catalogue I18). */
const MAX_RETRY_AFTER_SECONDS = 5;

/**
 * One grant request to the zone's token endpoint, as the grant-specific services build it.
 * @internal
 */
export interface TokenGrantRequest {
  /** Cache and single-flight key: a hash that names the grant and every input, never a raw token (I27). */
  readonly key: string;
  /** Grant members of the form (`grant_type`, `subject_token`, `resource`, `scope` …), without client authentication. */
  readonly form: Readonly<Record<string, string>>;
  /** The scope asked for, reported when the zone does not say which it granted. */
  readonly requestedScope?: string;
  /** Never cache the result past this instant (ms since the epoch), e.g. the subject token's `exp`. */
  readonly cacheNotAfter?: number;
  /**
   * The trusted zone to ask (its token endpoint, this service's credentials there). Called only when
   * neither the in-process cache nor a pending request answers, and before the shared store is
   * asked: a `TokenExchangeError` it throws (`untrusted_issuer`) means no request at all. Also
   * called, without effect, to name the zone in the `exchanged` event when events are observed.
   */
  readonly zone: () => TrustedZone;
  /** Ask for a token bound to this key (RFC 9449 §5). */
  readonly dpop?: DpopBinding;
  /** The verified inbound agent the grant acts for (`@Grant`), named by its `exchanged` event; never sent. */
  readonly agent?: AgentContext;
}

/** One POST to the token endpoint: the grant, this service's authentication for it, the overall deadline, the zone's DPoP nonce once known. */
interface Attempt {
  readonly request: TokenGrantRequest;
  readonly credentials: ClientAuthenticationParts;
  readonly deadline: AbortSignal;
  readonly nonce?: string;
  /** The client span's context for the zone (`traceparent`), when a tracer is registered. */
  readonly traceHeaders?: Readonly<Record<string, string>>;
}

/** A token from the zone (or the shared store) and until when it may be served from a cache. */
interface Performed {
  token: ExchangedToken;
  cacheUntil?: number;
  /** `shared`: from the shared store, no request to the zone. */
  shared?: boolean;
}

/** An answer the zone gave, or a failure on the way, with whether one retry is worth it. */
class AttemptFailure extends Error {
  constructor(
    readonly error: TokenExchangeError,
    readonly retryAfterMs: number | undefined,
    /** The `DPoP-Nonce` of a `use_dpop_nonce` answer (RFC 9449 §8). */
    readonly dpopNonce?: string,
  ) {
    super(error.message);
  }
}

/**
 * The machinery every grant of this service shares (token exchange on behalf of a user,
 * `client_credentials` as itself, substitute-user impersonation): client authentication, one POST
 * to the discovered `token_endpoint` with an absolute deadline and at most one retry, strict
 * parsing of the answer (RFC 6749 §5.1, RFC 8693 §2.2.1), typed errors, a bounded cache until
 * `expires_in` minus a margin, and single flight for identical concurrent requests. This is the one
 * place where issued tokens are cached: with an `exchangeStore`, a cache shared with the other
 * instances sits behind the in-process one, for every grant. With several zones each request goes
 * to the zone its grant names ({@link zoneOfSubjectToken}, {@link zoneFor}), with that zone's
 * credentials.
 * @internal
 */
@Injectable()
export class TokenRequestClient implements OnModuleDestroy {
  private readonly cache: BoundedCache<ExchangedToken>;
  private readonly flights = new SingleFlight<Performed>();
  private readonly shared: SharedExchangeCache | undefined;

  constructor(
    private readonly zones: TrustedZones,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
    @Optional() private readonly events?: DecisionEvents,
    @Optional() @Inject(KEYCARD_TRACE_CONTEXT) private readonly traces?: TraceContextSource,
  ) {
    this.cache = new BoundedCache(options.exchangeCacheSize, () => clock.now());
    this.shared = options.exchangeStore && new SharedExchangeCache(options.exchangeStore, options.logger, () => clock.now());
  }

  /** Lets the shared store release what it opened itself (a Redis client it created) when the app closes. */
  async onModuleDestroy(): Promise<void> {
    await this.options.exchangeStore?.close?.();
  }

  /**
   * The cached token for `request.key`, the pending request for it, the shared store's entry (when
   * configured), or a new request; a new token is kept in both caches.
   */
  request(grant: TokenGrantRequest): Promise<ExchangedToken> {
    // A request that requires a DPoP-bound token is never served what one that only asked got
    // (a Bearer token accepted with a warning): its own cache entry, flight and shared entry (Q40).
    const request = grant.dpop?.required ? { ...grant, key: `${grant.key}.dpop-required` } : grant;
    const { key } = request;
    const cached = this.cache.get(key);
    if (cached) {
      this.served(request, 'hit');
      return Promise.resolve(cached);
    }
    let started = false; // this caller started the flight (the others joined it: a miss for them too)
    return this.flights
      .run(key, () => {
        started = true;
        return this.fromSharedOrZone(request).then((performed) => {
          if (performed.cacheUntil !== undefined) this.cache.set(key, performed.token, performed.cacheUntil);
          return performed;
        });
      })
      .then(({ token, shared }) => this.served(request, started && shared === true ? 'shared' : 'miss', token));
  }

  /** Publishes the `exchanged` event of a grant served (catalogue W5), when anyone observes; hands `token` on. */
  private served<T>(request: TokenGrantRequest, cache: ExchangedEvent['cache'], token?: T): T {
    if (this.events?.active) this.events.publish(exchangedEvent(request, cache));
    return token as T;
  }

  /**
   * The zone that issued `subjectToken`, which judges it: the only zone with one zone; with several,
   * the one whose issuer is exactly the token's (unverified) `iss` (catalogue S5).
   * @throws TokenExchangeError `untrusted_issuer` when no trusted zone matches.
   */
  zoneOfSubjectToken(subjectToken: string): TrustedZone {
    if (this.zones.only) return this.zones.only;
    const iss = subjectToken.length > MAX_DECODED_SUBJECT_LENGTH ? undefined : readUnverifiedIssuer(subjectToken);
    return this.zones.forIssuer(iss) ?? untrusted('the subject token was not issued by a trusted zone');
  }

  /**
   * The zone a grant that names no subject token asks (decision Q22): the one named by `zone` (an
   * issuer, exactly as configured); else, with one zone, that zone; else the zone that issued the
   * token of the call being served ({@link servingIssuer}). Outside a verified call, with several
   * zones, no zone is guessed: the first one would act for whichever tenant happens to be listed first.
   * @throws TokenExchangeError `untrusted_issuer` when `zone` names no trusted zone, `zone_required`
   *   when several zones are trusted and neither `zone` nor a served call names one.
   */
  zoneFor(zone: string | undefined): TrustedZone {
    if (zone !== undefined) return this.zones.forIssuer(zone) ?? untrusted("'zone' names no trusted zone");
    if (this.zones.only) return this.zones.only;
    const serving = this.zones.forIssuer(servingIssuer());
    if (serving) return serving;
    throw new TokenExchangeError("several zones are trusted: name the zone to ask ('zone'), or call from a request verified at one", 'zone_required');
  }

  private async fromSharedOrZone(request: TokenGrantRequest): Promise<Performed> {
    const zone = request.zone();
    if (!this.shared) return this.traced(request, zone);
    const key = sharedKeyOf(zone, request.key);
    const shared = await this.shared.get(key);
    if (shared) return { ...shared, shared: true };
    const result = await this.traced(request, zone);
    if (result.cacheUntil !== undefined) await this.shared.set(key, result.token, result.cacheUntil);
    return result;
  }

  /**
   * {@link perform} inside a CLIENT span `keycard.exchange` when a tracer is registered
   * (`nestjs-keycard/telemetry`), its context sent to the zone as `traceparent` (catalogue W5).
   * The span names the grant, the zone and the target, never a token or a credential.
   */
  private traced(request: TokenGrantRequest, zone: TrustedZone): Promise<Performed> {
    const { traces } = this;
    if (traces?.clientSpan === undefined) return this.perform(request, zone);
    const { form } = request;
    const attributes: Record<string, string | readonly string[]> = { 'keycard.exchange.grant': grantName(form.grant_type), 'keycard.issuer': zone.issuer };
    if (form.resource !== undefined) attributes['keycard.resource'] = form.resource;
    if (form.scope !== undefined) attributes['keycard.scopes.requested'] = form.scope.split(' ');
    return traces.clientSpan('keycard.exchange', attributes, (headers) => this.perform(request, zone, headers));
  }

  private async perform(request: TokenGrantRequest, zone: TrustedZone, traceHeaders?: Readonly<Record<string, string>>): Promise<Performed> {
    const auth = zone.clientAuthentication;
    if (!auth) {
      // Several zones may each have their own credentials: name the one that has none.
      throw new TokenExchangeError(`no 'clientCredentials' are configured for the zone ${zone.issuer}: set KeycardModule's 'clientCredentials', or the zone's own in 'zones'`, 'config');
    }
    const tokenEndpoint = await this.tokenEndpoint(zone);
    const started = performance.now();
    const deadline = AbortSignal.timeout(REQUEST_DEADLINE_MS);
    let retried = false;
    let reauthenticated = false;
    let nonce: string | undefined;
    for (;;) {
      // Fresh per attempt (a new assertion), and kept: an invalid_client is judged against what this attempt sent (I7).
      const credentials = await this.credentialsFor(auth, tokenEndpoint, deadline);
      try {
        const token = await this.attempt(tokenEndpoint, { request, credentials, deadline, nonce, traceHeaders });
        return { token, cacheUntil: this.cacheUntil(token, request.cacheNotAfter) };
      } catch (failure) {
        if (!(failure instanceof AttemptFailure)) throw failure;
        const { error } = failure;
        if (error.code === 'invalid_client' && !reauthenticated && (await beforeRequestDeadline(credentialsRotated(auth, credentials, deadline), deadline))) {
          reauthenticated = true; // a rotated workload token: one retry with the new one (I7)
          continue;
        }
        if (failure.dpopNonce !== undefined && nonce === undefined) {
          nonce = failure.dpopNonce; // RFC 9449 §8: one retry with the zone's nonce (H30)
          continue;
        }
        const waitMs = failure.retryAfterMs;
        const budgetMs = REQUEST_DEADLINE_MS - (performance.now() - started);
        if (retried || waitMs === undefined || waitMs >= budgetMs) throw error;
        retried = true;
        try {
          await sleep(waitMs, undefined, { signal: deadline });
        } catch {
          throw error;
        }
      }
    }
  }

  private async tokenEndpoint(zone: TrustedZone): Promise<string> {
    let endpoint: string | undefined;
    try {
      endpoint = (await zone.metadata.get()).tokenEndpoint;
    } catch (error) {
      if (error instanceof ZoneUnavailableException) {
        throw new TokenExchangeError('the zone metadata is unavailable', 'unavailable', undefined, undefined, error.retryAfterSeconds);
      }
      throw error;
    }
    if (!endpoint) throw new TokenExchangeError('the zone publishes no usable token_endpoint', 'unavailable');
    return endpoint;
  }

  /**
   * The client credentials of one attempt (a fresh assertion each time), read within the request's
   * deadline: a source that never answers (an app's function, a hung file system) fails the
   * exchange `unavailable` instead of holding it, and every identical one in its flight (I19).
   */
  private async credentialsFor(auth: ClientAuthentication, tokenEndpoint: string, deadline: AbortSignal): Promise<ClientAuthenticationParts> {
    try {
      return await beforeRequestDeadline(auth.authenticate(tokenEndpoint), deadline);
    } catch (error) {
      if (error instanceof TokenExchangeError) throw error;
      // An app's own ClientAuthentication failed: its message may hold what it read, never passed on.
      throw new TokenExchangeError('the client credentials could not be read (clientCredentials)', 'config');
    }
  }

  private async attempt(tokenEndpoint: string, attempt: Attempt): Promise<ExchangedToken> {
    const { request, credentials, deadline, nonce, traceHeaders } = attempt;
    // RFC 9449 §5: a fresh proof per request, no `ath` (no access token is presented).
    const proof = request.dpop?.key.proof({ method: 'POST', url: tokenEndpoint, nonce });
    let response: Response;
    try {
      response = await postAuthenticated({
        fetch: this.options.fetch,
        endpoint: tokenEndpoint,
        form: request.form,
        credentials,
        signal: deadline,
        headers: { ...traceHeaders, ...(proof === undefined ? {} : { dpop: proof }) },
      });
    } catch {
      if (deadline.aborted) throw this.timeout();
      throw new AttemptFailure(new TokenExchangeError('the token endpoint could not be reached', 'network'), jitterMs());
    }
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel().catch(() => undefined);
      // Following it would re-send the credentials and the subject token elsewhere (I22).
      throw new AttemptFailure(new TokenExchangeError(`the token endpoint redirected (HTTP ${response.status}); not followed`, 'network', undefined, response.status), undefined);
    }
    let text: string;
    try {
      text = await readCappedText(response, MAX_BODY_BYTES);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        throw new AttemptFailure(new TokenExchangeError('the token endpoint answered more than 1 MiB', 'invalid_response', undefined, response.status), undefined);
      }
      if (deadline.aborted) throw this.timeout();
      throw new AttemptFailure(new TokenExchangeError('the token endpoint answer was cut off', 'network', undefined, response.status), jitterMs());
    }
    const json = jsonObjectOf(response, text);
    if (response.status !== 200) throw this.errorAnswer(response, json);
    if (!json) {
      throw new AttemptFailure(new TokenExchangeError('the token endpoint answered 200 without a JSON object', 'invalid_response', undefined, 200), undefined);
    }
    return this.checkBinding(this.toToken(json, request.requestedScope), request.dpop);
  }

  private timeout(): AttemptFailure {
    return new AttemptFailure(new TokenExchangeError(`no answer from the token endpoint within ${REQUEST_DEADLINE_MS} ms`, 'timeout'), undefined);
  }

  /** RFC 6749 §5.2 errors; only a JSON body with a string `error` counts as an OAuth error (I21). */
  private errorAnswer(response: Response, json: Record<string, unknown> | undefined): AttemptFailure {
    const status = response.status;
    const code = typeof json?.error === 'string' && /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(json.error) ? json.error : undefined;
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'), this.clock.now());
    const overloaded = status === 429 || status === 503;
    const kind = overloaded ? 'unavailable' : code ? 'oauth' : 'invalid_response';
    // The zone's error_description is never copied: it may hold markup or CR/LF (I24).
    const message = `the token endpoint answered HTTP ${status}${code ? ` ${code}` : ''}`;
    const error = new TokenExchangeError(message, kind, code, status, retryAfter);
    const nonce = code === 'use_dpop_nonce' ? response.headers.get('dpop-nonce') : null;
    if (nonce !== null && /^[\x21\x23-\x5B\x5D-\x7E]{1,512}$/.test(nonce)) return new AttemptFailure(error, undefined, nonce);
    if (overloaded) {
      const waitMs = retryAfter === undefined ? jitterMs() : retryAfter <= MAX_RETRY_AFTER_SECONDS ? retryAfter * 1000 : undefined;
      return new AttemptFailure(error, waitMs);
    }
    return new AttemptFailure(error, status >= 500 ? jitterMs() : undefined);
  }

  /** RFC 8693 §2.2.1: `access_token`, `issued_token_type` and `token_type` are required (I9–I11). */
  private toToken(json: Record<string, unknown>, requestedScope: string | undefined): ExchangedToken {
    const { access_token: accessToken, issued_token_type: issuedTokenType, token_type: tokenType, expires_in: expiresIn, scope } = json;
    const invalid = (what: string) =>
      new AttemptFailure(new TokenExchangeError(`the token response ${what}`, 'invalid_response', undefined, 200), undefined);
    if (typeof accessToken !== 'string' || accessToken === '') throw invalid('lacks access_token');
    if (typeof issuedTokenType !== 'string' || issuedTokenType === '') throw invalid('lacks issued_token_type');
    if (typeof tokenType !== 'string' || tokenType === '') throw invalid('lacks token_type');
    if (expiresIn !== undefined && (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn < 0)) {
      throw invalid('has an invalid expires_in');
    }
    if (scope !== undefined && typeof scope !== 'string') throw invalid('has a scope that is not a string');
    const expiresAt = expiresIn === undefined ? undefined : new Date(this.clock.now() + expiresIn * 1000);
    // A lifetime no date can hold (1e300 s) would be an Invalid Date: a cache entry that never expires.
    if (expiresAt !== undefined && Number.isNaN(expiresAt.getTime())) throw invalid('has an invalid expires_in');
    const granted = scope ?? requestedScope ?? '';
    return Object.freeze({
      accessToken,
      tokenType,
      expiresIn,
      expiresAt,
      scope: granted,
      scopes: Object.freeze(granted.split(' ').filter(Boolean)),
      issuedTokenType,
    });
  }

  /**
   * RFC 9449 §5: a DPoP request is answered `token_type: "DPoP"`. A Bearer answer to a request
   * that required DPoP is discarded (`invalid_response`, not cached); otherwise it is kept, with a
   * warning (decision Q40). A DPoP answer to a request that sent no proof is discarded too: the
   * token is bound to a key this service does not hold, so every API would refuse it.
   */
  private checkBinding(token: ExchangedToken, dpop: DpopBinding | undefined): ExchangedToken {
    const bound = token.tokenType.toLowerCase() === 'dpop';
    if (dpop === undefined && bound) {
      throw new AttemptFailure(new TokenExchangeError('the token response is DPoP-bound, but the request sent no DPoP proof (pass `dpop` to bind tokens to a key)', 'invalid_response', undefined, 200), undefined);
    }
    if (dpop === undefined || bound) return token;
    if (dpop.required) {
      throw new AttemptFailure(new TokenExchangeError('the token response is not DPoP-bound', 'invalid_response', undefined, 200), undefined);
    }
    this.options.logger.warn(`The zone answered a DPoP token request with token_type ${logSafe(token.tokenType)}: the token is not bound to the key`);
    return token;
  }

  /** Until `expires_in` minus the margin, never past `notAfter`; not cached without `expires_in` (I11). */
  private cacheUntil(token: ExchangedToken, notAfter: number | undefined): number | undefined {
    if (token.expiresAt === undefined) return undefined;
    const until = token.expiresAt.getTime() - EXPIRY_MARGIN_MS;
    return notAfter === undefined ? until : Math.min(until, notAfter);
  }
}

/** `work`, or `unavailable` once the request's deadline passes first (a credential source that never answers). */
async function beforeRequestDeadline<T>(work: Promise<T>, deadline: AbortSignal): Promise<T> {
  try {
    return await beforeAbort(work, deadline);
  } catch (error) {
    if (error instanceof DeadlineExceededError) throw new TokenExchangeError(`the client credentials were not ready within ${REQUEST_DEADLINE_MS} ms`, 'unavailable');
    throw error;
  }
}

function untrusted(message: string): never {
  throw new TokenExchangeError(message, 'untrusted_issuer');
}

/** A `Retry-After` value in seconds (delay-seconds of up to 6 digits, or an HTTP-date), else undefined. */
function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d{1,6}$/.test(text)) return Number(text);
  // RFC 9110 §10.2.3: or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), the seconds until then.
  const at = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/** 100–500 ms before the one retry of a failed request (I17). */
function jitterMs(): number {
  return randomInt(100, 501);
}

/**
 * The shared store's key: the grant's key bound to the zone and to this service's client id, so two
 * different services sharing one Redis (and one key ring) never serve each other's tokens. A client
 * authentication without a client id (workload identity that names none) shares with every such
 * service of the zone: give those services a store prefix of their own (docs/scale-out.md).
 */
function sharedKeyOf(zone: TrustedZone, grantKey: string): string {
  const clientId = (zone.clientAuthentication as { clientId?: unknown } | undefined)?.clientId;
  return createHash('sha256').update(`${zone.issuer}\n${typeof clientId === 'string' ? clientId : ''}\n${grantKey}`).digest('base64url');
}

/** The grant as events and spans name it. */
function grantName(grantType: string | undefined): string {
  if (grantType === 'client_credentials') return 'client_credentials';
  return grantType === 'urn:ietf:params:oauth:grant-type:token-exchange' ? 'token_exchange' : (grantType ?? 'unknown');
}

/** The `exchanged` event of `request`: what was asked, of which zone, for whom; never a token. */
function exchangedEvent(request: TokenGrantRequest, cache: ExchangedEvent['cache']): ExchangedEvent {
  const { form, agent } = request;
  let zone: string | undefined;
  try {
    zone = request.zone().issuer;
  } catch {
    zone = undefined; // no zone to name (several zones, none chosen): the request fails on its own
  }
  return {
    type: 'exchanged',
    grant: grantName(form.grant_type),
    cache,
    resource: form.resource,
    scopes: form.scope?.split(' '),
    zone,
    performedBy: agent === undefined ? undefined : { issuer: agent.issuer, agentId: agent.agentId, clientId: agent.clientId },
    onBehalfOf: agent?.subject,
  };
}
