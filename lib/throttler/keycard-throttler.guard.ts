import { type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, type ThrottlerLimitDetail, type ThrottlerModuleOptions,
  type ThrottlerStorage,
} from '@nestjs/throttler';
import { entityLookupOf, isNestedField } from '../contexts/graphql.context.js';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import { RateLimitedException } from '../resource-server/keycard.exceptions.js';
import { DecisionCore } from '../decision/decision-core.js';

/** Where throttler headers go when the call has no HTTP response (gateways, graphql-ws, microservices). */
const NO_HEADERS = Object.freeze({ header: () => undefined });

/**
 * `@nestjs/throttler`'s guard, counting per verified agent (its issuer and stable agent id) instead of per IP address:
 * one noisy agent gets 429 + `Retry-After` while other agents — and the same user through another
 * agent — are unaffected. Unauthenticated requests (public routes) are counted per IP.
 *
 * Refusals count too (catalogue M19): every request the Keycard guard refuses (missing, forged,
 * expired token, missing scope; not 503 zone outages) is counted per client address on its route,
 * and once that address is over the limit it gets 429 + `Retry-After` instead of the challenge —
 * whichever guard Nest runs first. A valid agent from the same address is counted on its own.
 * `@SkipThrottle()` on a route turns that off there too.
 *
 * The module's discovery endpoints (`/.well-known/…`) are never counted (catalogue M20): they are
 * served on the HTTP adapter outside Nest's pipeline, where no guard runs.
 *
 * It runs the Keycard guard first when that has not run yet in this request, so global guard order
 * does not matter; the Keycard decision core does not verify a request twice.
 *
 * @example
 * ```ts
 * imports: [KeycardModule.forRoot(…), ThrottlerModule.forRoot([{ ttl: 60_000, limit: 100 }])],
 * providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
 * ```
 * @publicApi
 */
@Injectable()
export class KeycardThrottlerGuard extends ThrottlerGuard {
  /** What this guard threw to answer a client over its limit, told apart from a failing storage (M19). */
  private readonly limitAnswers = new WeakSet<object>();
  /** Federation `_entities` fields (their resolve info) already counted (see `isRepeatedEntityLookup`). */
  private readonly countedLookups = new WeakSet<object>();

  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly decisions: DecisionCore,
    private readonly contexts: KeycardContexts,
  ) {
    super(options, storage, reflector);
    decisions.limitRefusalsWith((context) => this.countRefusal(context));
  }

  /**
   * Asks the Keycard decision core first (unless it already admitted the call: it does not verify
   * twice), provisionally: this guard may still answer 429, so the call's final outcome (200, or 429
   * `rate_limited` with the agent) is published as a decision event once counted, and observers such
   * as the audit log record one outcome per call. A call the core refuses is published by the core.
   */
  override async canActivate(context: ExecutionContext): Promise<boolean> {
    if (!(await this.decisions.decideProvisionally(context))) return false;
    // A field below the root (a field resolver, once per list item): judged by the core above,
    // not counted, or one list query would spend an agent's whole limit.
    if (context.getType<string>() === 'graphql' && (isNestedField(context) || this.isRepeatedEntityLookup(context))) {
      this.decisions.conclude(context, 200);
      return true;
    }
    let served: boolean;
    try {
      served = await super.canActivate(context);
    } catch (thrown) {
      if (this.isLimitAnswer(thrown)) this.decisions.conclude(context, 429, 'rate_limited');
      else this.decisions.conclude(context, 500); // the storage failed: the client gets an error, not the handler
      throw thrown;
    }
    this.decisions.conclude(context, served ? 200 : 403);
    return served;
  }

  /**
   * The call's request and response in any context (N9): `@nestjs/throttler` reads them through
   * `switchToHttp()`, which in a resolver or a gateway yields the resolver's root or the socket.
   * Where there is no HTTP response, headers have nowhere to go.
   */
  protected override getRequestResponse(context: ExecutionContext): { req: Record<string, unknown>; res: Record<string, unknown> } {
    const kind = this.contexts.kindOf(context);
    if (kind === undefined || kind.name === 'http') return super.getRequestResponse(context);
    const req = kind.carrier(context) as Record<string, unknown>;
    const raw = kind.httpResponse(context, req);
    return { req, res: raw === undefined ? NO_HEADERS : { header: (name: string, value: unknown) => raw.setHeader(name, String(value)) } };
  }

  /**
   * The 429 reaches the client the way that context's refusals do: over HTTP the body every refusal
   * has, `{ "error": "rate_limited", "error_description": "Too many requests, retry later" }` with
   * `Retry-After` (not `@nestjs/throttler`'s `{ statusCode, message }`); a GraphQL error, an
   * exception event or an RpcException elsewhere.
   */
  protected override async throwThrottlingException(context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const kind = this.contexts.kindOf(context);
    let answer: unknown;
    if (kind === undefined) {
      answer = await super.throwThrottlingException(context, detail).then(() => undefined, (thrown: unknown) => thrown);
    } else {
      const denial = new RateLimitedException(detail.timeToBlockExpire);
      answer = await kind.refuse({ denial, context, carrier: kind.carrier(context), headers: denial.headers() });
    }
    if (typeof answer === 'object' && answer !== null) this.limitAnswers.add(answer);
    throw answer;
  }

  /**
   * The agent when the token was verified — its issuer and stable id (catalogue O14, Q18: a
   * `client_id` is unique only at its issuer, so two zones' `agent-x` never share a bucket) —
   * else the client address (of the upgrade request for sockets).
   */
  protected override async getTracker(request: Record<string, unknown>, context?: ExecutionContext): Promise<string> {
    const agent = request.user;
    if (isVerifiedAgent(agent)) return `agent:${JSON.stringify([agent.issuer, agent.agentId])}`;
    const kind = context === undefined ? undefined : this.contexts.kindOf(context);
    // An Express / Fastify request (HTTP, GraphQL over HTTP, MCP): its `ip` honours the app's proxy
    // settings, and IPv6 addresses are grouped by subnet, as @nestjs/throttler does on HTTP routes.
    if (kind === undefined || kind.name === 'http' || typeof request.ip === 'string') return `ip:${await super.getTracker(request)}`;
    // Sockets and microservices: the upgrade request's or the transport's peer address. None at
    // all (a transport that does not tell) is one shared bucket, named so.
    const address = kind.httpRequest(context!, request)?.socket?.remoteAddress ?? kind.clientAddress?.(context!, request);
    return address === undefined ? 'ip:unknown' : `ip:${await super.getTracker({ ip: address })}`;
  }

  /**
   * Counts a request the Keycard guard is refusing, with every throttler, skip rule and storage of
   * this guard; no agent is on the request, so the tracker is the client address. Resolves with
   * the context's 429 refusal when the address is over the limit (`RateLimitedException` with
   * `Retry-After` over HTTP; see {@link throwThrottlingException}); with `undefined` under
   * the limit; rejects when the limiter failed (see `RefusalLimiter`).
   */
  private countRefusal(context: ExecutionContext): Promise<unknown> {
    if (context.getType<string>() === 'graphql' && this.isRepeatedEntityLookup(context)) return Promise.resolve(undefined);
    return super.canActivate(context).then(
      () => undefined,
      (thrown: unknown) => {
        if (this.isLimitAnswer(thrown)) return thrown;
        throw thrown; // storage down, …: the Keycard guard refuses as it would without a limiter
      },
    );
  }

  /**
   * A federation entity lookup after the first of its `_entities` field: that field is one call of
   * the operation, however many entities it asks for, so only its first lookup is counted.
   */
  private isRepeatedEntityLookup(context: ExecutionContext): boolean {
    const lookup = entityLookupOf(context);
    if (lookup === undefined) return false;
    if (this.countedLookups.has(lookup)) return true;
    this.countedLookups.add(lookup);
    return false;
  }

  private isLimitAnswer(thrown: unknown): boolean {
    return typeof thrown === 'object' && thrown !== null && this.limitAnswers.has(thrown);
  }
}
