import type { ExecutionContext } from '@nestjs/common';

/**
 * Gateway calls the module's guard has looked at, marked on their `ExecutionContext` (Nest builds
 * one per call and hands it to every guard of that call). Where Nest runs the module's `APP_GUARD`
 * on gateways (NestJS 12), the guard bound to each gateway finds the call judged and lets it
 * through. A symbol-keyed mark rather than a `WeakSet`: one entry per message of a burst would be
 * weak-collection work for the garbage collector (catalogue O5); no client input reaches the context.
 */
const JUDGED = Symbol('keycard.judged');

export function noteJudged(context: ExecutionContext): void {
  (context as ExecutionContext & { [JUDGED]?: true })[JUDGED] = true;
}

export function wasJudged(context: ExecutionContext): boolean {
  return (context as ExecutionContext & { [JUDGED]?: true })[JUDGED] === true;
}
