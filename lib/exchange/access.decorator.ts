import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { accessContextOf } from './grant.interceptor.js';
import { grantHolderOf } from './inbound-credentials.js';

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
  const access = accessContextOf(grantHolderOf(context));
  if (!access) throw new TypeError(`@Access() needs a @Grant() on ${context.getClass().name}.${context.getHandler().name}`);
  return access;
});
