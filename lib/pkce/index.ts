export { authenticate, PkceLoginError } from './authenticate.js';
export type { AuthenticateOptions, PkceTokens } from './authenticate.js';
export { findChallenge, parseWwwAuthenticate } from '../www-authenticate.js';
export type { AuthChallenge } from '../www-authenticate.js';
