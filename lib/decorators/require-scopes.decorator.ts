import { SetMetadata } from '@nestjs/common';
import { KEYCARD_SCOPES } from '../keycard.constants.js';

/** RFC 6749 §3.3 scope-token. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/**
 * Requires every listed scope (all-of). On a method it replaces the controller's list. A valid
 * token without them gets 403 `insufficient_scope` naming all of them. The scopes are also
 * published in the resource metadata's `scopes_supported`.
 *
 * @example
 * ```ts
 * @RequireScopes('orders:read', 'orders:write')
 * @Post('orders')
 * create() { … }
 * ```
 * @throws TypeError at startup for a scope that is not a valid RFC 6749 scope-token.
 * @publicApi
 */
export const RequireScopes = (...scopes: string[]) => {
  for (const scope of scopes) {
    if (typeof scope !== 'string' || !SCOPE_TOKEN.test(scope)) {
      throw new TypeError(`@RequireScopes: ${JSON.stringify(scope)} is not a valid scope`);
    }
  }
  return SetMetadata(KEYCARD_SCOPES, Object.freeze([...new Set(scopes)]));
};
