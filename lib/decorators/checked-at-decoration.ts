/**
 * Throws the problem a policy decorator's argument has, at decoration: a requirement that requires
 * nothing (or less than it reads) must never reach a handler, where it would replace the class's.
 * @throws TypeError `<decorator>: <problem>`.
 */
export function checkedAt(decorator: string, problem: string | undefined): void {
  if (problem !== undefined) throw new TypeError(`${decorator}: ${problem}`);
}
