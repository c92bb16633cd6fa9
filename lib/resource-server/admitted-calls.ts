const ADMITTED = Symbol('keycard.admitted-by');

/**
 * The calls one guard instance has admitted, where several calls share a carrier (GraphQL fields,
 * socket messages): keyed by the call's own argument list, which Nest builds afresh for every call.
 * A second run of the same guard in the same call (the throttler integration runs it first) then
 * answers at once.
 *
 * The argument list holds, under a symbol, the guard that admitted it, rather than sitting in a
 * `WeakSet`: a `WeakSet` add and lookup per resolver call cost about 0.5 µs, the whole difference
 * between the guard's GraphQL and HTTP paths (`npm run bench:micro`). Naming the guard keeps what a
 * per-instance `WeakSet` gave: an app's `KeycardGuard` subclass never takes another instance's
 * admission for its own. Whatever cannot hold the mark (a frozen list, or another guard's mark
 * written over this one's) is judged again: slower, never wrongly admitted.
 */
export class AdmittedCalls {
  add(args: object): void {
    if (Object.isExtensible(args)) (args as Record<symbol, unknown>)[ADMITTED] = this;
  }

  has(args: object): boolean {
    return (args as Record<symbol, unknown>)[ADMITTED] === this;
  }
}
