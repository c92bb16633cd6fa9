import type { DenialReason } from './keycard.exceptions.js';

/**
 * What the module remembers about one request, under a symbol no client input can set: why it was
 * refused (for the audit line), and whether the audit line is already arranged.
 */
interface RequestState {
  denial?: DenialReason;
  audited?: boolean;
}

const STATE = Symbol('keycard.request-state');

export function requestState(request: object): RequestState {
  const holder = request as { [STATE]?: RequestState };
  holder[STATE] ??= {};
  return holder[STATE];
}
