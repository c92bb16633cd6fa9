import type { ExecutionContext } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';

/**
 * The request of an HTTP call, as `context.switchToHttp().getRequest()` answers it, without its
 * cost: Nest's `switchToHttp()` assigns three new closures onto the context at every call
 * (`Object.assign(this, { getRequest: () => …, … })`), on every request the guard judges and every
 * `@Agent()` parameter (issue 24). On Nest's own context, `getArgByIndex(0)` is what those
 * closures return. Any other context (made by hand, a mock whose `getArgByIndex` is an auto-stub
 * that answers something else) is asked the usual way: only `switchToHttp()` is sure to name the
 * request there, and reading a stub's answer as one failed with a TypeError (trial24b).
 */
export function httpRequestOf<T>(context: ExecutionContext): T {
  return context instanceof ExecutionContextHost ? context.getArgByIndex<T>(0) : context.switchToHttp().getRequest<T>();
}

/** The response of an HTTP call: `switchToHttp().getResponse()` without its cost (see {@link httpRequestOf}). */
export function httpResponseOf<T>(context: ExecutionContext): T {
  return context instanceof ExecutionContextHost ? context.getArgByIndex<T>(1) : context.switchToHttp().getResponse<T>();
}
