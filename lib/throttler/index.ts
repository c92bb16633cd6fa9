export { KeycardThrottlerGuard } from './keycard-throttler.guard.js';
