import type { Call } from './call.js';
import type { Requirement } from './policy/requirement.js';

/**
 * What a door that serves many operations through one route adds to the decision of a call on
 * that route: an MCP endpoint is one `POST /mcp` whose body names the tool, so the scopes, whether
 * a call without a token is served, and what the transport reads after admission depend on the
 * body. The endpoint gives itself to the route rules at bootstrap (`RouteRules.endpoint` of every
 * route it serves); the door layer asks it as it builds a call on such a route
 * (`KeycardContexts.callOf`) and the admission hands it the admitted call. The decision core never
 * asks it, and nothing of the decision imports the door (STYLE 23, imports point down).
 */
export interface EndpointExtension {
  /**
   * The operation `call`'s body names (an MCP `tools/call`), looked up once per call; `undefined`
   * when it names none the endpoint knows (the route's own rules then apply).
   */
  operationOf(call: Call): EndpointOperation | undefined;
  /**
   * After `call` was admitted (`call.agent` undefined when it was served without a token): what
   * the transport reads off the request (session, `auth`, `user`) and the end of its answer at expiry.
   */
  admittedCall(call: Call): void;
}

/** What one operation of an endpoint needs, as {@link EndpointExtension.operationOf} finds it in a call's body. */
export interface EndpointOperation {
  /** True when a call without a token is served (a `@Public()` tool). */
  readonly isPublic: boolean;
  /** Every scope the call needs: the route's and the operation's. */
  readonly scopes: readonly string[] | undefined;
  /** The operation's own compiled requirement (scopes, alternatives, claims, step-up), judged after the route's. */
  readonly requirement?: Requirement;
}
