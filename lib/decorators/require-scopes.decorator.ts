import { SetMetadata } from '@nestjs/common';
import { KEYCARD_SCOPES } from '../keycard.constants.js';
import { type ArgumentScopes, KEYCARD_ARGUMENT_SCOPES, KEYCARD_SCOPE_PATHS } from '../decision/policy/policy-metadata.js';
import { isScopeToken } from '../decision/policy/scope-hierarchy.js';

function checked(where: string, scopes: readonly unknown[]): string[] {
  for (const scope of scopes) {
    if (!isScopeToken(scope)) {
      throw new TypeError(`${where}: ${JSON.stringify(scope)} is not a valid scope`);
    }
  }
  return [...new Set(scopes as string[])];
}

/**
 * Requires every listed scope (all-of). On a method it replaces the controller's list. A valid
 * token without them gets 403 `insufficient_scope` naming all of them. The scopes are also
 * published in the resource metadata's `scopes_supported`. With the `scopeHierarchy` option a
 * broader scope satisfies a narrower one (`orders:write` covers `orders:read`).
 *
 * @example
 * ```ts
 * @RequireScopes('orders:read', 'orders:write')
 * @Post('orders')
 * create() { … }
 * ```
 * @throws TypeError at startup for no scope at all, or a scope that is not a valid RFC 6749
 *   scope-token; the bootstrap fails for `offline_access` (catalogue Q29).
 * @publicApi
 */
const requireScopes = (...scopes: string[]) => {
  // On a method an empty list would replace the controller's scopes with none: any valid token.
  if (scopes.length === 0) throw new TypeError('@RequireScopes: give at least one scope (a method needing only a valid token needs no decorator inside an unscoped controller)');
  return SetMetadata(KEYCARD_SCOPES, Object.freeze(checked('@RequireScopes', scopes)));
};

/**
 * Alternative scope paths (catalogue T8, Q25): the call needs every scope of at least one path, on
 * top of any `@RequireScopes()` of the method or its class. A refusal names one whole path: the one
 * sharing the most scopes with the token, ties to the first declared, so declare the
 * least-privileged path first.
 * @example `@RequireScopes.anyOf(['orders:read', 'orders:write'], ['orders:admin'])`
 * @throws TypeError at startup for no path, an empty path or an invalid scope.
 */
function anyOf(...paths: string[][]) {
  if (paths.length === 0 || paths.some((path) => !Array.isArray(path) || path.length === 0)) {
    throw new TypeError('@RequireScopes.anyOf: give at least one path, each a non-empty array of scopes');
  }
  return SetMetadata(KEYCARD_SCOPE_PATHS, Object.freeze(paths.map((path) => Object.freeze(checked('@RequireScopes.anyOf', path)))));
}

/**
 * Scopes that depend on the call's arguments (catalogue T10, T12, T26), required on top of the
 * static ones and named with them in one challenge. `fn` runs after the token is verified, once per
 * call, with the arguments as the door delivers them (see {@link ArgumentScopes}); a function that
 * throws or returns no valid scope list refuses the call with 500 and one error line (T13).
 * The arguments are the caller's, unvalidated: write `fn` as an allow-list, so that only the exact
 * values that need less get less (a repeated query parameter arrives as an array, a JSON body may
 * hold any type; the module passes them on as they are).
 * @example `@RequireScopes.fromArguments((args: { visibility?: unknown }) => args.visibility === 'public' ? ['repo:read'] : ['repo:private'])`
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function fromArguments<A = any>(fn: ArgumentScopes<A>) {
  if (typeof fn !== 'function') throw new TypeError('@RequireScopes.fromArguments: give a function of the arguments');
  return SetMetadata(KEYCARD_ARGUMENT_SCOPES, fn);
}

/** @publicApi */
export const RequireScopes = Object.assign(requireScopes, { anyOf, fromArguments });
