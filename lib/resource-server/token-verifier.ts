import { Inject, Injectable } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { isBearerTokenText, withBearerGrammar } from './bearer-token.extractor.js';
import { InvalidTokenException, KeycardException } from './keycard.exceptions.js';
import { KeycardStrategy } from './keycard.strategy.js';
import type { ProtectedResource } from './protected-resource.js';
import { TokenVerification } from './token-verification.js';
import { VerifiedTokenCache } from './verified-token-cache.js';

/**
 * The one verification path of the module, shared by the guard (every execution context) and the
 * connection hooks (graphql-ws, WebSocket handshakes): the verified-token cache first, then the
 * passport-jwt strategy, whose result is cached for the next call.
 *
 * The HTTP doors hand it tokens whose RFC 6750 `b64token` grammar is not checked yet (a scan of the
 * whole token per request; issue 24): a cache hit is the text of a token that had it, a token that
 * decodes as a compact JWS has it, and every other outcome is checked here first, so a token
 * without it is refused `token_malformed` as the extractor would refuse it, and never introspected.
 */
@Injectable()
export class TokenVerifier {
  /** With `opaqueTokens: 'introspect'`: where tokens that are not JWS compact serialisations go (set at bootstrap). */
  private opaque?: (token: string, resource: ProtectedResource) => AgentContext | Promise<AgentContext>;

  constructor(
    private readonly strategy: KeycardStrategy,
    private readonly verifiedTokens: VerifiedTokenCache,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
  ) {}

  /**
   * The agent of a token meant for `resource`: synchronously on a cache hit, and on a miss while
   * the zone's keys are fresh (no promise on either path); a promise when keys must be fetched.
   * @throws (or rejects with) KeycardException, or anything the strategy throws, which callers turn
   *   into `invalid_token`.
   */
  verify(token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    return this.verifiedTokens.get(token, resource.id) ?? this.verifyUncached(token, resource);
  }

  /** The agent the verified-token cache holds for `token` meant for `resource`, or undefined. */
  cached(token: string, resource: ProtectedResource): AgentContext | undefined {
    return this.verifiedTokens.get(token, resource.id);
  }

  /**
   * {@link verify} past the cache, for a caller that looked in it already ({@link cached}) and
   * shares the outcome between several calls (the fields of one GraphQL request; catalogue O3:
   * verified once). The outcome is remembered as by {@link verify}.
   * @throws (or rejects with) what {@link verify} throws.
   */
  verifyUncached(token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    if (this.opaque !== undefined && !isCompactJws(token)) return this.opaque(withBearerGrammar(token), resource);
    const verification = new TokenVerification(token, resource);
    let agent: AgentContext | Promise<AgentContext>;
    try {
      agent = this.strategy.verify(verification);
    } catch (error) {
      return this.refused(error, verification);
    }
    if (!(agent instanceof Promise)) return this.remembered(verification, agent);
    return agent.then(
      (verified) => this.remembered(verification, verified),
      (error: unknown) => this.refused(error, verification),
    );
  }

  /**
   * Sends tokens that are not JWS compact serialisations (not three dot-separated parts) to
   * `verify` (RFC 7662 introspection) instead of the JWT rules. Their agents are never cached here.
   * @internal
   */
  introspectOpaqueTokensWith(verify: (token: string, resource: ProtectedResource) => AgentContext | Promise<AgentContext>): void {
    this.opaque = verify;
  }

  /**
   * At debug level, a token that failed verification is followed by what the module expected of
   * it: the issuer(s) (`zoneUrl`) and the audience (`resource`). A token minted for another
   * audience or by another zone is the most common first-hour mistake, and the denial line alone
   * (`reason=audience_mismatch`) does not say what the right value would have been. Here, where a
   * token is verified, so once per token however many calls share the refusal (a GraphQL operation
   * of 200 fields costs one line), and never on the success path. Configuration only: no claim of
   * the token, never the token.
   */
  private refused(failure: unknown, { token, resource }: TokenVerification): never {
    const error = isBearerTokenText(token) ? failure : new InvalidTokenException('token_malformed');
    const { logger, zones } = this.options;
    const status = error instanceof KeycardException ? error.getStatus() : 401;
    // A zone outage or a misconfiguration is logged as such.
    if (typeof logger.debug === 'function' && status === 401) {
      const code = error instanceof KeycardException ? error.code : 'invalid_token';
      const issuers = zones.filter((zone) => zone.resourceIds === undefined || zone.resourceIds.has(resource.id)).map((zone) => zone.issuer);
      logger.debug(`Token refused (${code}): this API expects tokens from issuer ${issuers.join(' or ')} for audience ${logSafe(resource.id, 512)}`);
    }
    throw error;
  }

  private remembered(verification: TokenVerification, agent: AgentContext): AgentContext {
    this.verifiedTokens.set(verification, agent);
    return agent;
  }
}

/** Three dot-separated parts (RFC 7515 §7.1): what the JWT rules judge; anything else is opaque. */
function isCompactJws(token: string): boolean {
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  return second > 0 && token.indexOf('.', second + 1) < 0;
}
