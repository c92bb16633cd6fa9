import { Inject, Injectable } from '@nestjs/common';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { explainRefusedToken } from '../logging/denial-expectations.js';
import { KeycardStrategy, type VerificationRequest } from './keycard.strategy.js';
import type { ProtectedResource } from './protected-resource.js';
import { VerifiedTokenCache } from './verified-token-cache.js';

/**
 * The one verification path of the module, shared by the guard (every execution context) and the
 * connection hooks (graphql-ws, WebSocket handshakes): the verified-token cache first, then the
 * passport-jwt strategy, whose result is cached for the next call.
 */
@Injectable()
export class TokenVerifier {
  constructor(
    private readonly strategy: KeycardStrategy,
    private readonly verifiedTokens: VerifiedTokenCache,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
  ) {}

  /**
   * The agent of a token meant for `resource`: synchronously on a cache hit (no promise on the hot
   * path), asynchronously otherwise.
   * @throws KeycardException (or anything the strategy throws, which callers turn into `invalid_token`).
   */
  verify(token: string, resource: ProtectedResource): AgentContext | Promise<AgentContext> {
    const known = this.verifiedTokens.get(token, resource.id);
    return known ?? this.verifyAndRemember(token, resource);
  }

  private async verifyAndRemember(token: string, resource: ProtectedResource): Promise<AgentContext> {
    const verification: VerificationRequest = { token, resource };
    let agent: AgentContext;
    try {
      agent = await this.strategy.verify(verification);
    } catch (error) {
      explainRefusedToken(this.options, error, resource);
      throw error;
    }
    this.verifiedTokens.set(verification, agent);
    return agent;
  }
}
