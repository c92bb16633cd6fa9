import { type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, type ThrottlerModuleOptions, type ThrottlerStorage,
} from '@nestjs/throttler';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KeycardGuard } from '../resource-server/keycard.guard.js';

/**
 * `@nestjs/throttler`'s guard, counting per verified agent (`client_id`) instead of per IP address:
 * one noisy agent gets 429 + `Retry-After` while other agents — and the same user through another
 * agent — are unaffected. Unauthenticated requests (public routes) are counted per IP.
 *
 * It runs the Keycard guard first when that has not run yet in this request, so global guard order
 * does not matter; the Keycard guard does not verify a request twice.
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
  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly keycard: KeycardGuard,
  ) {
    super(options, storage, reflector);
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() === 'http' && !(await this.keycard.canActivate(context))) return false;
    return super.canActivate(context);
  }

  /** The agent when the token was verified, else the client address. */
  protected override async getTracker(request: Record<string, unknown>): Promise<string> {
    const agent = request.user as AgentContext | undefined;
    if (agent && typeof agent.clientId === 'string' && typeof agent.tokenId === 'string') return `agent:${agent.clientId}`;
    return `ip:${await super.getTracker(request)}`;
  }
}
