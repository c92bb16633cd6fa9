import { describe, it } from '@jest/globals';

type TestFn = Parameters<typeof it>[1];
type SuiteFn = Parameters<typeof describe>[1];

/** Jest's `it`, or `it.skip` with the reason in the test's name when there is one: a skipped test says why. */
export function itUnless(reason: string | undefined): (name: string, fn: TestFn, timeout?: number) => void {
  return (name, fn, timeout) => (reason === undefined ? it(name, fn, timeout) : it.skip(`${name} (skipped: ${reason})`, fn, timeout));
}

/** Jest's `describe`, or `describe.skip` with the reason in the suite's name when there is one. */
export function describeUnless(reason: string | undefined, name: string, fn: SuiteFn): void {
  if (reason === undefined) describe(name, fn);
  else describe.skip(`${name} (skipped: ${reason})`, fn);
}
