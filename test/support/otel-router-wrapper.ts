import { RouterExecutionContext } from '@nestjs/core/router/router-execution-context.js';

/**
 * Does to Nest's router what OpenTelemetry's `@opentelemetry/instrumentation-nestjs-core` (0.71,
 * NestJS `>=4 <12`, loaded by `auto-instrumentations-node`) does when its `require` hook sees
 * `@nestjs/core/router/router-execution-context.js` (Jest's module registry bypasses that hook, and
 * its package needs a newer `@opentelemetry/api` than this repository's): `create(instance,
 * callback, …)` is handed, in place of the controller's method, a new function that traces and
 * calls it, given the method's `name` and a copy of every reflect-metadata key of it. Guards then
 * see that function as `context.getHandler()`.
 * @returns the handler names traced so far, and `restore()` to undo the patch.
 */
export function wrapRouterHandlersLikeOpenTelemetry(): { readonly traced: string[]; restore(): void } {
  const prototype = RouterExecutionContext.prototype as unknown as { create: (...args: unknown[]) => unknown };
  const original = prototype.create;
  const traced: string[] = [];
  prototype.create = function createTraced(this: unknown, ...args: unknown[]) {
    const method = args[1] as (...callArgs: unknown[]) => unknown;
    const stand = function (this: unknown, ...callArgs: unknown[]) {
      traced.push(method.name);
      return method.apply(this, callArgs);
    };
    if (method.name) Object.defineProperty(stand, 'name', { value: method.name });
    for (const key of Reflect.getMetadataKeys(method) as unknown[]) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, method) as unknown, stand);
    }
    args[1] = stand;
    return original.apply(this, args);
  };
  return { traced, restore: () => { prototype.create = original; } };
}
