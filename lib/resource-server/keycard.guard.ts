import { type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { DecisionCore } from '../decision/decision-core.js';
import { holdsAllScopes, type Judge, logRefusal } from '../decision/judge.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { KeycardException } from './keycard.exceptions.js';

/**
 * The global guard `KeycardModule` binds with `APP_GUARD`. Every route, resolver, gateway message
 * and microservice handler needs a valid zone access token for this API unless it is `@Public()`;
 * `@RequireScopes()` adds scopes. On success the call's request (`request.user`) holds the
 * {@link AgentContext}; on refusal an HTTP response carries the RFC 6750 / RFC 9728 challenge and a
 * JSON `{ error, error_description }` body, and other contexts get their own kind of error
 * (catalogue §N: GraphQL errors, WebSocket `exception` events, `RpcException`s, mcp-nest tool errors).
 *
 * The guard only asks the {@link DecisionCore} ("How a call is decided" in the README); to watch
 * decisions, subscribe to `DecisionEvents` instead of extending it. Extend it and override the
 * `protected` hooks to change how scopes are judged or what a refusal logs; provide your subclass
 * as `KeycardGuard` (`overrideProvider(KeycardGuard)` in tests), or bind it as another `APP_GUARD`:
 * it then judges again, with its own hooks, what another guard admitted in the same call.
 *
 * @throws MissingCredentialsException 401 without an error code: no bearer token.
 * @throws InvalidTokenException 401 `invalid_token`: malformed, forged, expired or foreign token.
 * @throws InvalidRequestException 400 `invalid_request`: more than one token.
 * @throws InsufficientScopeException 403 `insufficient_scope`.
 * @throws ZoneUnavailableException 503 + `Retry-After`: the zone's metadata or keys are unreachable.
 * @publicApi
 */
@Injectable()
export class KeycardGuard implements CanActivate {
  /** This guard's hooks, as the core calls them. */
  private readonly judge: Judge = {
    hasScopes: (agent, required) => this.hasScopes(agent, required),
    logDenial: (call, denial, agent) => this.logDenial(call, denial, agent),
  };

  constructor(
    protected readonly reflector: Reflector,
    protected readonly core: DecisionCore,
    @Inject(KEYCARD_OPTIONS) protected readonly options: KeycardOptions,
  ) {}

  /**
   * Decides the call: synchronously when its token was verified before (the verified-token
   * cache), so the common case costs no promise. Any context type: the context layer
   * (`lib/contexts/`) says where the token is and how a refusal travels.
   */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    return this.core.decide(context, this.judge);
  }

  /**
   * All-of, exact and case-sensitive match (catalogue D1–D9). An override answers synchronously:
   * only `true` admits (a Promise, even of `true`, refuses).
   */
  protected hasScopes(agent: AgentContext, required: readonly string[]): boolean {
    return holdsAllScopes(agent, required);
  }

  /**
   * Logs a refusal with its reason, the call (`GET /orders`, `graphql query Orders.orders`) and the
   * agent when known; never the token. The call and the claims are the client's words: escaped and
   * capped, so they cannot add a line or drive the terminal (CWE-117).
   */
  protected logDenial(call: string, denial: KeycardException, agent: AgentContext | undefined): void {
    logRefusal(this.options.logger, { call, denial, agent });
  }
}

export type { RefusalLimiter } from '../decision/decision-core.js';
