export { withKeycardSecurity } from './keycard-security.js';
export type { KeycardSecurityOptions } from './keycard-security.js';
