import type { ExecutionContext } from '@nestjs/common';
import type { CallKind, Carrier } from '../contexts/call-kind.interface.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { DenialReason } from '../resource-server/keycard.exceptions.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import type { RouteRules } from '../resource-server/route-rules.registry.js';
import type { EndpointOperation } from './endpoint-extension.js';

/**
 * One call as the decision core sees it, whatever door it came through (STYLE 23): built once per
 * call by {@link Call.of}, then passed whole instead of positional arguments. The first four
 * fields never change; the rest is learnt on the way (the resource, the token, the agent).
 */
export class Call {
  /** The resource that judges the call, once chosen. */
  resource?: ProtectedResource;
  /** The bearer token, from when it is read until the call is decided (never logged; INV7). */
  token?: string;
  /** The verified agent, once known (also for a call refused after verification, e.g. for its scopes). */
  agent?: AgentContext;
  /** On an endpoint that serves several operations (MCP), the one this call's body names. */
  operation?: EndpointOperation;
  /**
   * What the endpoint's transport checks threw as the call was built (MCP `Origin`, header–body
   * consistency: Q30, Q31): the call is answered with it, before any token work.
   */
  transportRefusal?: unknown;
  /** The scopes the policy required of the call, once judged (the route's, plus an MCP tool's). */
  required?: readonly string[];
  /**
   * Why a call that presented a token is served without an agent: an `@OptionalAuth()` call whose
   * zone cannot be reached (Q26, catalogue T15). Its admission's event names it (`detail`), and so its audit line.
   */
  anonymousReason?: DenialReason;
  /**
   * True when another judge of this same call admitted it already (the throttler integration ran
   * the core first): judged again with this judge's hooks, neither verified nor published again.
   */
  admittedBefore = false;
  /** When the core first saw the call (`performance.now()`), for observers that time decisions; 0 when none listens. */
  started = 0;

  /** True when the carrier outlives the call (a WebSocket connection): asked once per call. */
  readonly isConnection: boolean;

  private constructor(
    readonly kind: CallKind,
    readonly context: ExecutionContext,
    readonly carrier: Carrier,
    readonly rules: RouteRules,
  ) {
    this.isConnection = kind.isConnection(carrier);
  }

  static of(kind: CallKind, context: ExecutionContext, rules: RouteRules): Call {
    return new Call(kind, context, kind.carrier(context), rules);
  }

  /**
   * What the call requires: the scopes the policy judged, else what it will judge (the route's,
   * on an MCP endpoint with the tool's), also for a call refused before the policy ran (Q12).
   */
  get requiredScopes(): readonly string[] | undefined {
    return this.required ?? (this.operation === undefined ? this.rules.scopes : this.operation.scopes);
  }

  /** True when the call is answered over an HTTP response (its audit line waits for the response). */
  get answeredOverHttp(): boolean {
    return this.kind.httpResponse(this.context, this.carrier) !== undefined;
  }

  /** The call for logs and audit lines: `GET /orders`, `graphql query Orders.orders`, `ws orders:watch`. */
  describe(): string {
    return this.kind.describe(this.context, this.carrier);
  }
}
