import type { IncomingMessage } from 'node:http';
import type { KeycardContexts } from '../contexts/keycard-contexts.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardOptions } from '../keycard-options.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import { MissingCredentialsException, ZoneUnavailableException } from '../resource-server/keycard.exceptions.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import type { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import type { TokenVerifier } from '../resource-server/token-verifier.js';
import type { Call } from './call.js';
import { admissionOf } from './earlier-admission.js';
import { type SharedVerification, VERIFYING, type VerifyingHolder } from './shared-verification.js';
import type { TokenValidators } from './token-validator.js';

/** What verification needs from the module. */
export interface VerificationParts {
  readonly contexts: KeycardContexts;
  readonly verifier: TokenVerifier;
  readonly routeRules: RouteRulesRegistry;
  readonly options: KeycardOptions;
  readonly validators: TokenValidators;
}

/** The outcome of verifying a call that is served without a token: a `@Public()` route, or a tool its endpoint serves so (N12). */
export const ANONYMOUS = Symbol('keycard.anonymous');

/**
 * Verification, the first half of a decision (STYLE 24): the agent of a call, established in
 * order — none for a `@Public()` route; the agent an earlier judge of the same call admitted; the
 * connection's agent while its token lasts; else the resource, the token, the verified-token cache
 * or the passport-jwt strategy (header, zone, key, signature, claims), then every
 * {@link TokenValidator} (on cache hits too). Synchronous on a cache hit.
 */
export class Verification {
  constructor(private readonly parts: VerificationParts) {}

  /**
   * The verified agent of `call` (also left on `call.agent`), or {@link ANONYMOUS} for a call
   * served without one: a `@Public()` route, a `@Public()` mcp-nest tool called without a token,
   * an `@OptionalAuth()` call without a token or whose zone cannot be reached.
   * @throws KeycardException (or anything the stages throw, which the core turns into `invalid_token`).
   */
  agentOf(call: Call): AgentContext | typeof ANONYMOUS | Promise<AgentContext | typeof ANONYMOUS> {
    if (call.rules.isPublic) return ANONYMOUS;
    const { kind, context, carrier } = call;
    const earlier = this.admittedBefore(call);
    if (earlier !== undefined) return earlier;
    // The agent the connection opened with: a message refused because its token expired names it (log, audit).
    const opened = call.isConnection ? kind.connectionAgent(carrier) : undefined;
    if (opened !== undefined) {
      call.agent = opened;
      return this.validated(call, this.parts.contexts.stillValid(opened));
    }
    const raw = kind.httpRequest(context, carrier);
    call.resource = this.resourceOf(call, raw);
    call.token = kind.token(context, carrier);
    if (call.token === undefined) return this.anonymous(call);
    if (call.rules.optional) return this.verifiedOrAnonymous(call);
    const agent = this.verify(call);
    return agent instanceof Promise ? agent.then((verified) => this.validated(call, verified)) : this.validated(call, agent);
  }

  /**
   * An `@OptionalAuth()` call with a token (Q26): its verified agent; a token that fails is refused
   * as anywhere; but when the zone cannot be reached the call is served anonymously (never on the
   * token's unverified claims), and its audit line names `zone_unavailable` (catalogue T15).
   */
  private verifiedOrAnonymous(call: Call): AgentContext | typeof ANONYMOUS | Promise<AgentContext | typeof ANONYMOUS> {
    const unavailable = (error: unknown): typeof ANONYMOUS => {
      if (!(error instanceof ZoneUnavailableException)) throw error;
      call.anonymousReason = 'zone_unavailable';
      return ANONYMOUS;
    };
    try {
      const agent = this.verify(call);
      return agent instanceof Promise ? agent.then((verified) => this.validated(call, verified), unavailable) : this.validated(call, agent);
    } catch (error) {
      return unavailable(error);
    }
  }

  /** Runs the validators in order; the first that throws refuses the call. Waits when one must (a shared DPoP replay store). */
  private validated(call: Call, agent: AgentContext): AgentContext | Promise<AgentContext> {
    call.agent = agent;
    const pending = this.parts.validators.run(agent, call);
    return pending === undefined ? agent : pending.then(() => agent);
  }

  /**
   * A call without a token: an `@OptionalAuth()` handler (Q26; on a connection, only one opened
   * without a token) or N12, a `@Public()` mcp-nest tool, is served; anything else is refused.
   */
  private anonymous(call: Call): typeof ANONYMOUS {
    // A connection's messages are judged on its handshake's agent: a message of a connection opened
    // with a token never goes anonymous; one opened without any (`allowAnonymous`) has no token
    // anywhere, which is what `@OptionalAuth()` serves anonymously (Q26).
    if (call.rules.optional && (!call.isConnection || call.kind.openedAnonymously?.(call.carrier) === true)) return ANONYMOUS;
    if (call.operation?.isPublic === true) return ANONYMOUS;
    throw new MissingCredentialsException();
  }

  /**
   * The agent another judge of this same call admitted (the throttler integration runs the core
   * first; an app may bind a stricter guard too): only the core puts a verified agent on a carrier,
   * after every check passed. Where several calls share the carrier (GraphQL fields, socket
   * messages) the call's argument list holds the admission; elsewhere the carrier does.
   */
  private admittedBefore(call: Call): AgentContext | undefined {
    const { kind, context, carrier } = call;
    const earlier = kind.sharedCarrier ? admissionOf(context.getArgs()) : undefined;
    const agent = kind.sharedCarrier ? earlier?.agent : isVerifiedAgent(carrier.user) ? carrier.user : undefined;
    if (agent === undefined) return undefined;
    call.admittedBefore = true;
    call.agent = agent;
    call.resource = earlier?.resource ?? this.resourceOf(call, kind.httpRequest(context, carrier));
    return agent;
  }

  /** Fields of one GraphQL operation share the request: one verification of its token, not one per field. */
  private verify(call: Call): AgentContext | Promise<AgentContext> {
    const token = call.token!;
    const resource = call.resource!;
    const { verifier } = this.parts;
    if (!call.kind.sharedCarrier || call.isConnection) return verifier.verify(token, resource);
    const holder = call.carrier as VerifyingHolder;
    const shared = holder[VERIFYING];
    if (shared !== undefined && shared.token === token && shared.resource === resource) return this.sharedOutcome(shared);
    return verifier.cached(token, resource) ?? this.verifiedOnce(holder, token, resource);
  }

  /**
   * A later call's share of its request's verification: what it threw, or its agent, judged afresh
   * against this call's own requirements. A refusal is logged once per request (`Refusals`), by
   * whichever call is refused first: an `@OptionalAuth()` field that met the outage first is
   * served, not refused. The agent must still be valid: a request can outlive its token (an app
   * whose GraphQL context hands graphql-ws operations the connection's upgrade request as `req`
   * shares it between every operation of the connection).
   * @throws (or rejects with) what the shared verification threw, or InvalidTokenException
   *   (`expired`) once the agent's token expired.
   */
  private sharedOutcome(shared: SharedVerification): AgentContext | Promise<AgentContext> {
    if (shared.failed) throw shared.error;
    const { contexts } = this.parts;
    const agent = shared.agent!;
    return agent instanceof Promise ? agent.then((verified) => contexts.stillValid(verified)) : contexts.stillValid(agent);
  }

  /**
   * A token the cache does not hold, verified for the request's first call and its outcome left on
   * the request for the later ones: synchronously while the zone's keys are fresh (no promise, as
   * over HTTP), its promise while they are fetched.
   * @throws what the verification threw, also kept for the later calls.
   */
  private verifiedOnce(holder: VerifyingHolder, token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    try {
      const agent = this.parts.verifier.verifyUncached(token, resource);
      keep(holder, { token, resource, agent, failed: false, error: undefined });
      return agent;
    } catch (error) {
      keep(holder, { token, resource, agent: undefined, failed: true, error });
      throw error;
    }
  }

  /**
   * The resource that judges this call: the route's own (fixed at bootstrap), else the one the
   * matched path decides; calls without an HTTP request (gRPC, TCP) get the first configured one.
   * @throws InvalidRequestException / ResourceNotConfiguredException, as the resolver does.
   */
  resourceOf(call: Call, raw: IncomingMessage | undefined): ProtectedResource {
    const { rules } = call;
    if (rules.resource !== undefined) return rules.resource;
    return raw === undefined ? this.parts.contexts.resourceFor(undefined) : this.parts.routeRules.resourceFor(rules, call.carrier, raw);
  }
}

/**
 * Leaves a verification's outcome on its request for the later calls. A request that cannot take a
 * field (an app's own frozen object as its GraphQL context's `req`) keeps nothing: each of its calls
 * verifies for itself, as a refusal never turns into an internal error.
 */
function keep(holder: VerifyingHolder, shared: SharedVerification): void {
  if (Object.isExtensible(holder)) holder[VERIFYING] = shared;
}
