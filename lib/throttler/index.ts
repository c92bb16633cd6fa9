export { KeycardThrottlerGuard } from './keycard-throttler.guard.js';
export { FailSafeThrottlerStorage } from './fail-safe-throttler-storage.js';
export type { FailSafeThrottlerStorageOptions } from './fail-safe-throttler-storage.js';
