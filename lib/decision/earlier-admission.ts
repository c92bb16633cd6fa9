import type { Call } from './call.js';

const ADMISSION = Symbol('keycard.admission');

/**
 * The admission of a call that several judges decide in turn (the throttler integration runs the
 * core before the module's guard; an app may bind a stricter `KeycardGuard` subclass as well):
 * kept on the call's own argument list, which Nest builds afresh for every call and passes to
 * every guard of it. A later judge finds the agent there, judges it again with its own hooks
 * (never skipped, never trusting another judge's scopes), and neither verifies nor publishes again.
 *
 * A symbol property rather than a `WeakMap`: a `WeakMap` set and lookup per resolver call cost
 * about 0.5 µs, the whole difference between the GraphQL and HTTP paths (`npm run bench:micro`).
 * An argument list that cannot hold it (frozen) is simply verified again: slower, never wrong.
 */
export function rememberAdmission(args: object, call: Call): void {
  if (Object.isExtensible(args)) (args as Record<symbol, unknown>)[ADMISSION] = call;
}

/** The call admitted earlier with this argument list, if any. */
export function admissionOf(args: object): Call | undefined {
  return (args as Record<symbol, Call | undefined>)[ADMISSION];
}
