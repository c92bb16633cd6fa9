import { Inject, Injectable } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { explainRefusedToken } from '../logging/denial-expectations.js';
import { KeycardStrategy } from './keycard.strategy.js';
import type { ProtectedResource } from './protected-resource.js';
import { TokenVerification } from './token-verification.js';
import { VerifiedTokenCache } from './verified-token-cache.js';

/**
 * The one verification path of the module, shared by the guard (every execution context) and the
 * connection hooks (graphql-ws, WebSocket handshakes): the verified-token cache first, then the
 * passport-jwt strategy, whose result is cached for the next call.
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
    return this.verifiedTokens.get(token, resource.id) ?? this.verifyAndRemember(token, resource);
  }

  /**
   * {@link verify} for a token that several calls share (the fields of one GraphQL request): a
   * miss answers with a promise, also when it failed at once, so later calls await that one
   * verification instead of repeating it (catalogue O3: verified once).
   */
  verifyShared(token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    return this.verifiedTokens.get(token, resource.id) ?? new Promise((resolve) => resolve(this.verifyAndRemember(token, resource)));
  }

  /**
   * Sends tokens that are not JWS compact serialisations (not three dot-separated parts) to
   * `verify` (RFC 7662 introspection) instead of the JWT rules. Their agents are never cached here.
   * @internal
   */
  introspectOpaqueTokensWith(verify: (token: string, resource: ProtectedResource) => AgentContext | Promise<AgentContext>): void {
    this.opaque = verify;
  }

  private verifyAndRemember(token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    if (this.opaque !== undefined && !isCompactJws(token)) return this.opaque(token, resource);
    const verification = new TokenVerification(token, resource);
    let agent: AgentContext | Promise<AgentContext>;
    try {
      agent = this.strategy.verify(verification);
    } catch (error) {
      return this.refused(error, resource);
    }
    if (!(agent instanceof Promise)) return this.remembered(verification, agent);
    return agent.then(
      (verified) => this.remembered(verification, verified),
      (error: unknown) => this.refused(error, resource),
    );
  }

  /** A refusal's debug line names the expected issuer and audience (never the token). */
  private refused(error: unknown, resource: ProtectedResource): never {
    explainRefusedToken(this.options, error, resource);
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
