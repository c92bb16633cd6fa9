export { KeycardHealthIndicator } from './keycard.health-indicator.js';
export { KEYCARD_HEALTH_OPTIONS, type KeycardHealthOptions } from './keycard-health-options.js';
