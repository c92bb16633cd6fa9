import type { AgentContext } from '../../interfaces/agent-context.interface.js';

/** Metadata keys of the policy decorators (read by the route rules registry at bootstrap). */
export const KEYCARD_SCOPE_PATHS = 'KEYCARD:SCOPE_PATHS';
export const KEYCARD_ARGUMENT_SCOPES = 'KEYCARD:ARGUMENT_SCOPES';
export const KEYCARD_OPTIONAL = 'KEYCARD:OPTIONAL_AUTH';
export const KEYCARD_CLAIMS = 'KEYCARD:CLAIMS';
export const KEYCARD_AUTHENTICATION = 'KEYCARD:AUTHENTICATION';
export const KEYCARD_ACTORS = 'KEYCARD:ACTORS';

/**
 * The scopes a call needs given its arguments (catalogue T10, T12): GraphQL field arguments after
 * coercion (variables included), a WebSocket message's payload, an RPC request, an MCP tool's
 * `arguments` (from the JSON-RPC body, never a header), or `{ params, query, body }` over HTTP.
 * Called after the token is verified, once per call. Must return an array of scope strings
 * (possibly empty); throwing or returning anything else refuses the call with 500 (T13). `args`
 * is the caller's input as delivered (a repeated query parameter is an array): compare against an
 * allow-list, and give every other value the strongest scope.
 * @publicApi
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ArgumentScopes<A = any> = (args: A, agent: AgentContext) => readonly string[];

/** A value a claim is compared with (exact, `===`). @publicApi */
export type ClaimValue = string | number | boolean;

/**
 * What one claim must hold: `includes` (an array claim containing the value), `equals` (the claim
 * is the value), or `oneOf` (the claim is one of the values). @publicApi
 */
export type ClaimPredicate =
  | { readonly includes: ClaimValue }
  | { readonly equals: ClaimValue }
  | { readonly oneOf: readonly ClaimValue[] };

/** `@RequireClaims()`: every named claim must satisfy its predicate. @publicApi */
export type ClaimRequirement = Readonly<Record<string, ClaimPredicate>>;

/**
 * `@RequireAuthentication()` (RFC 9470): the user's sign-in must be one of `acr` (exact match,
 * RFC 9470 §2), and/or at most `maxAge` seconds old (`auth_time`, with the clock leeway).
 * @publicApi
 */
export interface AuthenticationRequirement {
  /** Acceptable `acr` values, in order of preference (sent as `acr_values`). */
  readonly acr?: readonly string[];
  /** Seconds since the user last signed in (sent as `max_age`). */
  readonly maxAge?: number;
}

/**
 * `@RequireActors()` (RFC 8693 §4.1): bounds the delegation chain of the token's `act` claim.
 * @publicApi
 */
export interface ActorRequirement {
  /** Most links the `act` chain may have (0: no delegation at all). */
  readonly maxDepth?: number;
  /** `sub` values the outermost (current) actor may have; with this set, a token without `act` is refused. */
  readonly allowed?: readonly string[];
}
