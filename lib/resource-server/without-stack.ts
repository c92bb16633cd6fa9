/**
 * A `new Make(argument)` with no stack trace captured (`Error.stackTraceLimit` 0 while it is
 * constructed; restored however the constructor ends). Only for the errors that answer a client
 * (a refusal): nothing reads their stack, and capturing one is most of what constructing them costs.
 * Never for a fault, whose stack is how it is found.
 */
export function withoutStack<A, E>(Make: new (argument: A) => E, argument: A): E {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new Make(argument);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
