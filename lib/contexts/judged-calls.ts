import type { ExecutionContext } from '@nestjs/common';

/**
 * Gateway calls the module's guard has looked at, by their `ExecutionContext` (Nest builds one per
 * call and hands it to every guard of that call). Where Nest runs the module's `APP_GUARD` on
 * gateways (NestJS 12), the guard bound to each gateway finds the call judged and lets it through.
 */
const judged = new WeakSet<ExecutionContext>();

export function noteJudged(context: ExecutionContext): void {
  judged.add(context);
}

export function wasJudged(context: ExecutionContext): boolean {
  return judged.has(context);
}
