import { type CallHandler, type ExecutionContext, Inject, Injectable, type NestInterceptor } from '@nestjs/common';
import { from, type Observable, switchMap } from 'rxjs';
import { KeycardContexts } from '../contexts/keycard-contexts.js';
import { KEYCARD_GRANT, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { AccessContext, ResourceAccessError } from './access-context.js';
import type { ExchangedToken } from './exchanged-token.interface.js';
import type { GrantEntry } from './grant.decorator.js';
import { LOG_MESSAGE_MAX_LENGTH, logSafe } from '../logging/log-safe.js';
import { grantedAccessOf, handleGranted } from './granted-calls.js';
import { inboundCredentials } from './inbound-credentials.js';
import { TokenExchangeError } from './token-exchange.error.js';
import { TokenExchangeService } from './token-exchange.service.js';

/** One resource of a handler's merged grant. */
interface PlannedResource {
  readonly resource: string;
  readonly scope?: string;
  /** Send the caller's token as `actor_token` (GrantOptions). */
  readonly actor: boolean;
}

/**
 * Runs a handler's `@Grant()`: exchanges the verified inbound token for each named resource, in
 * parallel, and leaves an {@link AccessContext} for `@Access()`. Failures become per-resource
 * errors, never an exception (catalogue V1). Applied by `@Grant()`; not for direct use.
 * @internal
 */
@Injectable()
export class GrantInterceptor implements NestInterceptor {
  /**
   * The merged grant of each (controller, handler), computed on its first request. Keyed by both:
   * one inherited handler serves several controllers, each with its own class grant.
   */
  private readonly plans = new WeakMap<object, WeakMap<object, readonly PlannedResource[]>>();

  constructor(
    private readonly exchange: TokenExchangeService,
    private readonly contexts: KeycardContexts,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    // A grant on the controller and one on the method both apply this interceptor: run once.
    if (grantedAccessOf(context) !== undefined) return next.handle();
    return from(this.grant(context)).pipe(switchMap((access) => handleGranted(context, access, next)));
  }

  private async grant(context: ExecutionContext): Promise<AccessContext> {
    const plan = this.planFor(context);
    const inbound = inboundCredentials(context, this.contexts);
    const outcomes = await Promise.all(
      plan.map(async ({ resource, scope, actor }): Promise<[string, ExchangedToken | ResourceAccessError]> => {
        if (!inbound) return [resource, new ResourceAccessError(resource, 'no_inbound_token')];
        try {
          const actorToken = actor ? inbound.token : undefined; // RFC 8693 §2.1: the caller acts (GrantOptions)
          return [resource, await this.exchange.exchange({ subjectToken: inbound.token, resource, scope, actorToken }, inbound.agent)];
        } catch (error) {
          const cause = error instanceof TokenExchangeError ? error : new TokenExchangeError('the exchange failed unexpectedly', 'config');
          // The message is built from fixed text, the zone's status and its error code only (I24, I30).
          this.options.logger.warn(
            `Grant: no token for ${resource} (agent=${logSafe(inbound.agent.clientId)} jti=${logSafe(inbound.agent.tokenId)}): ${logSafe(cause.message, LOG_MESSAGE_MAX_LENGTH)}`,
          );
          return [resource, new ResourceAccessError(resource, 'exchange_failed', cause)];
        }
      }),
    );
    return new AccessContext(new Map(outcomes));
  }

  /** Method grants first, then the controller's; a resource named twice gets the union of its scopes. */
  private planFor(context: ExecutionContext): readonly PlannedResource[] {
    const handler = context.getHandler();
    const type = context.getClass();
    let ofClass = this.plans.get(type);
    if (ofClass === undefined) this.plans.set(type, (ofClass = new WeakMap()));
    let plan = ofClass.get(handler);
    if (plan) return plan;
    const entries = [
      ...((Reflect.getMetadata(KEYCARD_GRANT, handler) as readonly GrantEntry[] | undefined) ?? []),
      ...((Reflect.getMetadata(KEYCARD_GRANT, type) as readonly GrantEntry[] | undefined) ?? []),
    ];
    const merged = new Map<string, { scopes: Set<string>; actor: boolean }>();
    for (const { resource, scopes, actor } of entries) {
      const planned = merged.get(resource) ?? { scopes: new Set<string>(), actor: false };
      for (const scope of scopes) planned.scopes.add(scope);
      // A resource named twice passes the caller on when either grant asks to.
      planned.actor ||= actor;
      merged.set(resource, planned);
    }
    plan = Object.freeze([...merged].map(([resource, { scopes, actor }]) => ({ resource, scope: [...scopes].join(' ') || undefined, actor })));
    ofClass.set(handler, plan);
    return plan;
  }
}
