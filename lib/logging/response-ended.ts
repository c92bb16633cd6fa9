import type { ServerResponse } from 'node:http';

/**
 * Runs `then` once, when `response` ends: `finish` (the answer was handed to the OS), or `close`
 * without `finish` (the client hung up first, or the connection broke). A client that leaves before
 * the answer does not make a call unrecorded: its handler ran all the same (catalogue W1).
 * `then` gets `true` when the answer was not finished.
 */
export function onceResponseEnds(response: ServerResponse, then: (aborted: boolean) => void): void {
  // Already over: the client may hang up while the token is verified (a first JWKS fetch), before
  // anyone listens; its handler still runs once the call is admitted.
  if (response.writableFinished || response.closed || response.destroyed) {
    then(!response.writableFinished);
    return;
  }
  let done = false;
  const end = (aborted: boolean) => {
    if (done) return;
    done = true;
    then(aborted);
  };
  response.once('finish', () => end(false));
  // `close` also follows every `finish` (a tick later): ignored then.
  response.once('close', () => end(!response.writableFinished));
}
