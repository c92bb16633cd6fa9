import type { ExecutionContext } from '@nestjs/common';

/**
 * The request of an HTTP call, as `context.switchToHttp().getRequest()` answers it, without its
 * cost: Nest's `switchToHttp()` assigns three new closures onto the context at every call
 * (`Object.assign(this, { getRequest: () => …, … })`), on every request the guard judges and every
 * `@Agent()` parameter (issue 24). `getArgByIndex(0)` is what those closures return; a context
 * made by hand without it is asked the usual way.
 */
export function httpRequestOf<T>(context: ExecutionContext): T {
  return typeof context.getArgByIndex === 'function' ? context.getArgByIndex<T>(0) : context.switchToHttp().getRequest<T>();
}

/** The response of an HTTP call: `switchToHttp().getResponse()` without its cost (see {@link httpRequestOf}). */
export function httpResponseOf<T>(context: ExecutionContext): T {
  return typeof context.getArgByIndex === 'function' ? context.getArgByIndex<T>(1) : context.switchToHttp().getResponse<T>();
}
