export { TestZone } from './test-zone.js';
export type { TestZoneOptions, IssueTokenOptions, TokenForOptions, ZoneFault, ZoneEndpoint, ZoneKey } from './test-zone.js';
export { signJws, base64url } from '../jws-crypto.js';
export type { TestZoneClient, RecordedTokenRequest, ImpersonationPolicy } from './token-endpoint.js';
export { TestZoneMcpLogin } from './mcp-client-login.js';
export { DpopKey } from '../dpop/dpop-key.js';
export { SsfTransmitter } from './ssf-transmitter.js';
export type { SsfTransmitterOptions, PushAnswer } from './ssf-transmitter.js';
