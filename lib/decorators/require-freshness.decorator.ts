import { SetMetadata } from '@nestjs/common';

/** Metadata key of {@link RequireFreshness}. */
export const REQUIRE_FRESHNESS = 'keycard:require-freshness';

/**
 * Marks a route, resolver, gateway message or whole controller as needing to know for sure that
 * its token is still good, not only that it verifies:
 *
 * - its token is introspected at the zone that issued it (RFC 7662 §2, the zone's
 *   `introspection_endpoint` from its RFC 8414 metadata, with the module's `clientCredentials`):
 *   `active: false` → 401 `invalid_token`; the zone unreachable, slow (5 s), or answering anything
 *   but a JSON object with a boolean `active` → 503 with `Retry-After`; our credentials refused →
 *   500, logged as an error (catalogue X29, X32). Answers are reused only as the `introspection`
 *   option allows (off by default, Q36);
 * - with `KeycardRevocationModule`, the revocation list is consulted first, and while it cannot
 *   vouch that it is current (the shared store is down, the SSF stream is paused or its poller
 *   stale) calls are answered 503 with `Retry-After` (catalogue Q35, X35).
 *
 * Other routes are not affected: which routes demand freshness is settled once at bootstrap.
 * @publicApi
 */
export const RequireFreshness = (): MethodDecorator & ClassDecorator => SetMetadata(REQUIRE_FRESHNESS, true);

/** True when `handler` or its class (or a base class) declares {@link RequireFreshness}: read once per handler at bootstrap. */
export function declaresFreshness(handler: object, type: object): boolean {
  return Reflect.getMetadata(REQUIRE_FRESHNESS, handler) === true || Reflect.getMetadata(REQUIRE_FRESHNESS, type) === true;
}
