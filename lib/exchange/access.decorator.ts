import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { grantedAccessOf } from './granted-calls.js';

/**
 * Injects the {@link AccessContext} that the handler's `@Grant()` obtained: a token or a typed
 * error per upstream resource, and the overall `status`.
 *
 * @example
 * ```ts
 * @Grant('https://calendar.internal', 'events:read')
 * @Get('agenda')
 * agenda(@Access() access: AccessContext) { … }
 * ```
 * @throws TypeError when the handler has no `@Grant()` (a programming error).
 * @publicApi
 */
export const Access = createParamDecorator((_: unknown, context: ExecutionContext) => {
  const access = grantedAccessOf(context);
  if (!access) throw new TypeError(`@Access() needs a @Grant() on ${context.getClass().name}.${context.getHandler().name}`);
  return access;
});
