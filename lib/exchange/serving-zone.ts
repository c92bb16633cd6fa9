import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Observable } from 'rxjs';
import { carrierOf } from '../contexts/keycard-contexts.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';

/** The zone of the call a handler serves: the issuer of the token the guard verified for it. */
interface ServingCall {
  readonly issuer: string;
}

/**
 * The serving call of the code running now, across its awaits (Node's `AsyncLocalStorage`). Work a
 * handler starts and leaves running (a timer, an unawaited promise) keeps it too: it belongs to
 * that call.
 */
const servingCalls = new AsyncLocalStorage<ServingCall>();

/**
 * The issuer of the token verified for the call being served right now (HTTP request, GraphQL
 * field, gateway message, microservice or MCP tool call), or undefined outside one (a job, a
 * `@Public()` handler, a module without several zones: see {@link ServingZoneInterceptor}).
 * @internal
 */
export function servingIssuer(): string | undefined {
  return servingCalls.getStore()?.issuer;
}

/**
 * Runs each handler of a verified call inside its zone, so that grants naming no zone
 * (`ClientCredentialsService`, `ImpersonationService`) ask the zone the caller came from (catalogue
 * O17, decision Q22). Bound globally only when several zones are trusted: with one zone the choice
 * is never in doubt, and the call path stays as it was.
 * @internal
 */
export class ServingZoneInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const agent = carrierOf(context)?.user;
    if (!isVerifiedAgent(agent)) return next.handle();
    const call: ServingCall = { issuer: agent.issuer };
    // Both the handler's start (`handle()`) and its subscription run inside the store, so its
    // awaits inherit it whichever of the two a Nest version defers the handler to.
    return new Observable((subscriber) => servingCalls.run(call, () => next.handle().subscribe(subscriber)));
  }
}
