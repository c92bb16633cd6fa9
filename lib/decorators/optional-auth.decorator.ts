import { SetMetadata } from '@nestjs/common';
import { KEYCARD_OPTIONAL } from '../decision/policy/policy-metadata.js';

/**
 * Optional authentication (catalogue T14–T16, Q26): a call without a token (or with another scheme,
 * such as `Basic`) is served anonymously (`@Agent()` is undefined); a call with a valid token is
 * served with its agent. A token that is sent and fails (forged, expired, for another audience) is
 * still refused with 401 `invalid_token`, never taken for anonymous; two tokens are a 400. When the
 * zone cannot be reached, the call is served anonymously and the audit names `zone_unavailable`.
 * Every credential the module reads is judged so (the `DPoP` scheme when DPoP is on, gRPC
 * `authorization` metadata); what it never reads (`?access_token=`, a scheme it does not accept)
 * is no token. On WebSocket, socket.io and graphql-ws messages the handshake's token decides: an
 * anonymous connection reaches only `@Public()` handlers.
 * Cannot be combined with `@Public()` or a requirement on the same target (the bootstrap fails).
 *
 * @example
 * ```ts
 * @OptionalAuth()
 * @Get('greeting')
 * greet(@Agent() agent?: AgentContext) { return agent ? `Hello ${agent.subject}` : 'Hello'; }
 * ```
 * @publicApi
 */
export const OptionalAuth = () => SetMetadata(KEYCARD_OPTIONAL, true);
