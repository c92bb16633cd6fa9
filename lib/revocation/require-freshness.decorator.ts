import { SetMetadata } from '@nestjs/common';
import type { Call } from '../decision/call.js';

/** Metadata key of {@link RequireFreshness}. */
export const REQUIRE_FRESHNESS = 'keycard:require-freshness';

/**
 * Marks a route, resolver, gateway message or whole controller as needing to know for sure that
 * its token was not revoked: while the revocation list cannot vouch for that (the shared store is
 * down, the SSF stream is paused or its poller stale), its calls are answered 503 with
 * `Retry-After` instead of being served (catalogue Q35). Other routes keep serving, with one log
 * line and a degraded health indicator.
 * @publicApi
 */
export const RequireFreshness = (): MethodDecorator & ClassDecorator => SetMetadata(REQUIRE_FRESHNESS, true);

const demanded = new WeakMap<object, boolean>();

/** True when the call's handler or class demands freshness; read once per handler, then remembered. */
export function demandsFreshness(call: Call): boolean {
  const handler = call.context.getHandler();
  let answer = demanded.get(handler);
  if (answer === undefined) {
    answer = Reflect.getMetadata(REQUIRE_FRESHNESS, handler) === true || Reflect.getMetadata(REQUIRE_FRESHNESS, call.context.getClass()) === true;
    demanded.set(handler, answer);
  }
  return answer;
}
