const ADMITTED = Symbol('keycard.admitted-by');
const ADMISSION = Symbol('keycard.admission');

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
  /** Marks `args` as admitted by this instance; `admission` (what was decided) is kept for other judges of the same call. */
  add(args: object, admission?: object): void {
    if (!Object.isExtensible(args)) return;
    (args as Record<symbol, unknown>)[ADMITTED] = this;
    if (admission !== undefined) (args as Record<symbol, unknown>)[ADMISSION] = admission;
  }

  /**
   * What any instance admitted for `args` (the throttler integration's judge, then the module's
   * guard): a second judge of the same call re-judges that admission with its own hooks instead of
   * verifying again, and publishes no second decision.
   */
  static admissionOf<T extends object>(args: object): T | undefined {
    return (args as Record<symbol, T | undefined>)[ADMISSION];
  }

  has(args: object): boolean {
    return (args as Record<symbol, unknown>)[ADMITTED] === this;
  }
}
