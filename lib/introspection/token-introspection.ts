import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { Call } from '../decision/call.js';
import { TokenValidators, type TokenValidator } from '../decision/token-validator.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { InvalidTokenException, ResourceNotConfiguredException } from '../resource-server/keycard.exceptions.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import { TokenVerifier } from '../resource-server/token-verifier.js';
import { TrustedZones, type TrustedZone } from '../zone/trusted-zones.js';
import { connectionOf, verifiedTokenOf } from '../contexts/connection-state.js';
import { checkJwtAnswer, introspectedAgent, isIntrospected } from './introspected-agent.js';
import { IntrospectionClient } from './introspection.client.js';

/**
 * RFC 7662 token introspection on the decision core, wired once at bootstrap so that calls that
 * need none pay nothing:
 *
 * - routes that declare `@RequireFreshness()`: once the first such handler is known, a
 *   {@link TokenValidator} joins the module's validators (after the revocation list and DPoP, so a
 *   revoked token is refused before any network call: X35) and introspects the verified JWT of
 *   every call to those routes (X29); other routes skip it on one boolean fixed at bootstrap;
 * - `opaqueTokens: 'introspect'`: the token verifier hands tokens that are not JWS compact
 *   serialisations to {@link agentOfOpaque} instead of refusing them (X33).
 */
@Injectable()
export class TokenIntrospection implements OnModuleInit, TokenValidator {
  /** Handlers whose messages carry no token, already logged. */
  private readonly loggedTokenless = new WeakSet<object>();

  constructor(
    private readonly client: IntrospectionClient,
    private readonly zones: TrustedZones,
    private readonly routeRules: RouteRulesRegistry,
    private readonly validators: TokenValidators,
    private readonly verifier: TokenVerifier,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    if (this.options.introspection.opaqueTokens) this.verifier.introspectOpaqueTokensWith((token, resource) => this.agentOfOpaque(token, resource));
    this.routeRules.whenFreshnessDeclared(() => {
      this.checkCredentials();
      this.validators.useLast(this);
    });
  }

  /**
   * RFC 7662 §2.1: the introspection endpoint requires client authentication, so every zone needs
   * `clientCredentials` once a route demands freshness: a bootstrap error rather than a 500 per call.
   * @throws Error naming the zone.
   */
  private checkCredentials(): void {
    const zone = this.zones.all.find((candidate) => candidate.clientAuthentication === undefined);
    if (zone === undefined) return;
    throw new Error(
      `KeycardModule: @RequireFreshness() introspects tokens at the zone (RFC 7662), which needs this API's 'clientCredentials' there; none are configured for ${zone.issuer}`,
    );
  }

  /**
   * The freshness check (a {@link TokenValidator}): on a call to a route that demands freshness,
   * the zone that issued the verified JWT must say it is active, for this resource (X29, X30).
   * Agents built from an introspection answer (opaque tokens) were asked about for this call already.
   */
  validate(agent: AgentContext, call: Call | undefined): void | Promise<void> {
    if (call === undefined || !call.rules.freshness || isIntrospected(agent)) return;
    // A message of an open connection carries no token: the one its connection was verified from.
    const token = call.token ?? this.connectionToken(call);
    if (token === undefined) throw this.tokenless(call);
    const zone = this.zones.forIssuer(agent.issuer);
    if (zone === undefined) throw new InvalidTokenException('issuer_mismatch');
    // A connection's messages are judged for the resource it opened for, which its agent's `aud` names.
    const audiences = call.resource === undefined ? agent.audience : [call.resource.id];
    const judge = (answer: Parameters<typeof checkJwtAnswer>[0]) =>
      checkJwtAnswer(answer, { issuer: zone.issuer, audiences, nowSeconds: this.clock.now() / 1000 }, this.options.clockToleranceSeconds);
    const answer = this.client.answer(token, zone);
    return answer instanceof Promise ? answer.then(judge) : judge(answer);
  }

  /**
   * The agent of an opaque token meant for `resource`: the one zone serving `resource` is asked,
   * and its answer must name `resource` (`aud`) and the zone (`iss`) (X33, Q36).
   * @throws (or rejects with) InvalidTokenException, ZoneUnavailableException, ResourceNotConfiguredException.
   */
  agentOfOpaque(token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    const zone = this.zoneServing(resource);
    const build = (answer: Parameters<typeof introspectedAgent>[0]) =>
      introspectedAgent(answer, token, {
        expected: { issuer: zone.issuer, audience: resource.id, nowSeconds: this.clock.now() / 1000 },
        options: this.options,
      });
    const answer = this.client.answer(token, zone);
    return answer instanceof Promise ? answer.then(build) : build(answer);
  }

  private connectionToken(call: Call): string | undefined {
    const connection = call.isConnection ? connectionOf(call.carrier) : undefined;
    return connection === undefined ? undefined : verifiedTokenOf(connection);
  }

  /** The one zone that issues tokens for `resource` (the options allow no other shape with opaque tokens on). */
  private zoneServing(resource: ProtectedResource): TrustedZone {
    const zone = this.zones.only ?? this.zones.all.find((candidate) => candidate.serves(resource.id));
    if (zone === undefined) throw new InvalidTokenException('audience_mismatch');
    return zone;
  }

  /**
   * A freshness route reached by a call that carries no token the module knows (a connection the
   * module's hooks did not open): it cannot be introspected, so it is refused (500), logged once per handler.
   */
  private tokenless(call: Call): ResourceNotConfiguredException {
    const handler = call.context.getHandler();
    if (!this.loggedTokenless.has(handler)) {
      this.loggedTokenless.add(handler);
      this.options.logger.error(
        `KeycardModule: ${logSafe(call.describe())} demands freshness (@RequireFreshness()), but its calls carry no token to introspect; open the connection through KeycardConnections, or put @RequireFreshness() on an HTTP route, resolver or RPC handler`,
      );
    }
    return new ResourceNotConfiguredException('unsupported_context');
  }
}
