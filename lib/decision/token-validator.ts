import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { Call } from './call.js';

/**
 * One rule a verified token must also pass, on every call — cache hits included — after the
 * verification stages (header, zone, key, signature, claims), in the spirit of Spring Security's
 * `DelegatingOAuth2TokenValidator` (STYLE 24): revocation and sender constraints are validators,
 * not branches of the guard. Validators run in the order provided; the first that throws decides.
 * Keep them synchronous and allocation-free on the common path: they run on every request.
 * @publicApi
 */
export interface TokenValidator {
  /**
   * Accepts `agent` for `call` by returning, or refuses by throwing a `KeycardException`
   * (e.g. `InvalidTokenException`); anything else thrown becomes 401 `invalid_token`.
   */
  validate(agent: AgentContext, call: Call): void;
}

/**
 * Multi-provider token for the validators (`{ provide: KEYCARD_TOKEN_VALIDATORS, useValue: [...] }`).
 * @publicApi
 */
export const KEYCARD_TOKEN_VALIDATORS = 'KEYCARD:TOKEN_VALIDATORS';
