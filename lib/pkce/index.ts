export { authenticate, PkceLoginError } from './authenticate.js';
export type { AuthenticateOptions, PkceTokens } from './authenticate.js';
