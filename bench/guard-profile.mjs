// The guard's own share of a server's CPU, from the `.cpuprofile` bench/server.mjs writes with
// BENCH_CPU_PROFILE=dir: the time sampled under the guard's `canActivate` frame (its own code and
// all it calls synchronously: token parsing, key choice, `crypto.verify`, claim checks, the cache),
// per request. Why: a whole server's CPU per request moves by 10–40 µs between processes of one
// build (docs/operations.md "Two instruments"), far more than the guard costs beyond the ideal
// guard; the guard's frame alone is a few tens of µs and moves by a few, so its difference to the
// ideal guard's frame reads the module's own cost to a few µs. What it leaves out: work after a
// promise (a guard that awaits, e.g. fast-jwt's key callback, shows only its first part), the
// garbage collector's share, and any cost the guard puts on the rest of the pipeline.
import { readFileSync } from 'node:fs';

/** `canActivate` of the guards bench/server.mjs binds: the module's (any build), the peers', the allow-all one, passport's. */
const GUARD_FILE = /(keycard\.guard\.js|peer-guards\.mjs|bench\/server\.mjs|@nestjs\/passport\/dist\/auth\.guard\.js)$/;

/**
 * µs per request sampled under the guard's `canActivate` frames of one profile (the outermost such
 * frame of each stack: a guard calling `super.canActivate` is counted once), and the process's busy
 * µs per request (every sample but `(idle)`), for `requests` requests profiled.
 */
export function guardTimeOf(file, requests) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  // timeDeltas[i] is the time before sample i: the time of sample i is the delta that follows it.
  for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  const total = (node) => (self.get(node.id) ?? 0) + (node.children ?? []).reduce((sum, child) => sum + total(nodes.get(child)), 0);
  let guard = 0;
  const stack = [profile.nodes[0]];
  while (stack.length > 0) {
    const node = stack.pop();
    const { functionName, url } = node.callFrame;
    if (functionName === 'canActivate' && GUARD_FILE.test(url)) guard += total(node);
    else for (const child of node.children ?? []) stack.push(nodes.get(child));
  }
  let busy = 0;
  for (const [id, time] of self) if (nodes.get(id).callFrame.functionName !== '(idle)') busy += time;
  return { guard: guard / requests, busy: busy / requests };
}
