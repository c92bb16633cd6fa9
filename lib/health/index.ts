export { KeycardHealthIndicator } from './keycard.health-indicator.js';
