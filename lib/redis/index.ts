export { RedisExchangedTokenStore } from './redis-exchanged-token-store.js';
export type { RedisExchangedTokenStoreOptions } from './redis-exchanged-token-store.js';
export { TokenCipher } from './token-cipher.js';
export type { TokenCipherKey } from './token-cipher.js';
export { RedisDpopReplayStore } from './redis-dpop-replay-store.js';
export type { RedisDpopReplayStoreOptions } from './redis-dpop-replay-store.js';
export { RedisRevocationFeed } from '../revocation/redis-revocation-feed.js';
export type { RedisRevocationFeedOptions } from '../revocation/redis-revocation-feed.js';
