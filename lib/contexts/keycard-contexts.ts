import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { Call } from '../decision/call.js';
import type { EndpointExtension } from '../decision/endpoint-extension.js';
import { CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { acceptedSchemes } from '../dpop/accepted-schemes.js';
import {
  InvalidTokenException, KeycardException, ResourceNotConfiguredException,
} from '../resource-server/keycard.exceptions.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import { ResourceResolver } from '../resource-server/resource-resolver.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import type { CallKind, Carrier } from './call-kind.interface.js';
import { GraphQLCallKind, graphqlCarrier, type UnguardedServer } from './graphql.context.js';
import { HttpCallKind } from './http.context.js';
import { HttpTokenReader } from './http-token-reader.js';
import { logSafe } from '../logging/log-safe.js';
import { McpCallKind, mcpRequestOf } from './mcp.context.js';
import { RpcCallKind } from './rpc.context.js';
import { WsCallKind } from './ws.context.js';
import { httpRequestOf } from './http-arguments.js';

/** The log line of a subscription over a connection the module's hooks did not open: what it means, and the fix. */
const UNGUARDED_SUBSCRIPTIONS: Record<UnguardedServer, string> = {
  mercurius:
    'Keycard refused a Mercurius subscription: its connection was not opened through KeycardConnections.mercuriusSubscription(), so its token is neither verified nor ended at expiry. ' +
    'Enable it with subscription: keycard.mercuriusSubscription() in the MercuriusDriverConfig (GraphQLModule.forRootAsync, inject: [KeycardConnections])',
  'graphql-ws':
    "Keycard refused a graphql-ws subscription: its connection was not opened through KeycardConnections.graphqlWs(), so its token is neither verified nor ended at expiry. " +
    "Enable it with subscriptions: { 'graphql-ws': keycard.graphqlWs() } in the ApolloDriverConfig (GraphQLModule.forRootAsync, inject: [KeycardConnections])",
};

/**
 * The one place that turns an `ExecutionContext` of any type into what the guard judges (catalogue
 * §N): one {@link CallKind} per context type, chosen by `context.getType()`. The verification, the
 * cache and the rules stay the guard's; only where the token is and how a refusal travels differ.
 */
@Injectable()
export class KeycardContexts {
  private readonly http: HttpCallKind;
  private readonly graphql: GraphQLCallKind;
  private readonly ws = new WsCallKind(() => this.reportOnce(
    'ws-unguarded',
    'Keycard refused a WebSocket message: the connection was not opened through KeycardConnections.guard(), so it carries no token. Enable it with app.useWebSocketAdapter(app.get(KeycardConnections).guard(new WsAdapter(app)))',
  ));
  private readonly rpc: RpcCallKind;
  private readonly mcp = new McpCallKind((context) => this.reportOnce(
    'mcp-unguarded',
    `Keycard refused MCP tool ${context.getClass().name}.${context.getHandler().name}: its request did not pass the guard. ` +
      'Mount the MCP endpoint as a controller (`McpHttpControllerFor(transport)`), not on the HTTP adapter',
    'error',
  ));
  /** Every kind, in the order they are asked whether they judge a call. */
  private readonly kinds: readonly CallKind[];
  /** What was already reported as unsupported (context types, unguarded sockets): one log line each (N8). */
  private readonly reported = new Set<string>();

  constructor(
    adapterHost: HttpAdapterHost,
    private readonly resources: ResourceResolver,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly lifecycle: CarrierLifecycle,
    private readonly routeRules: RouteRulesRegistry,
  ) {
    const adapter = () => adapterHost.httpAdapter;
    const schemes = acceptedSchemes(options);
    // One reader for both HTTP doors: the request-logger check happens once per app, not per door.
    const tokens = new HttpTokenReader(schemes, options.logger);
    this.http = new HttpCallKind(adapter, tokens);
    this.graphql = new GraphQLCallKind(adapter, (server) => this.reportOnce(`${server}-unguarded`, UNGUARDED_SUBSCRIPTIONS[server]), tokens);
    this.rpc = new RpcCallKind(options.rpcTokenExtractor, schemes);
    // The MCP kind before the rpc kind: an mcp-nest tool call is an rpc context too.
    this.kinds = [this.http, this.graphql, this.ws, this.mcp, this.rpc];
  }

  /**
   * The {@link Call} in `context`, built once and whole: its kind, carrier and rules, and on an
   * endpoint that serves several operations through one route (MCP) the operation its body names
   * (`rules.endpoint`), so what decides the call never asks the endpoint. Decided at once without
   * one: `true` for a `@Public()` handler when nothing observes decisions (`observed` false) or its
   * context type is one the module cannot judge; `false`, with one log line, for a protected
   * handler in such a context (N8), and for a handler the app did not have at bootstrap (whose
   * decorators the module never read).
   */
  callOf(context: ExecutionContext, observed: boolean): Call | boolean {
    const kind = this.kindOf(context);
    const rules = this.routeRules.knownRules(context.getHandler(), context.getClass());
    if (rules === undefined) return this.refuseUnsupported(context, kind === undefined ? 'type' : 'handler');
    // A public MCP endpoint is still a Call: its transport checks (Origin) run before it is served.
    if (rules.isPublic && (kind === undefined || (!observed && rules.mcp === undefined))) return true;
    if (kind === undefined) return this.refuseUnsupported(context, 'type');
    return rules.endpoint === undefined ? Call.of(kind, context, rules) : this.endpointCall(Call.of(kind, context, rules), rules.endpoint);
  }

  /**
   * A call to an endpoint route with the operation its body names, looked up once. The endpoint's
   * transport checks run there, before any token work (MCP `Origin`, header–body consistency:
   * catalogue Q30, Q31); what they throw is kept on the call, which is answered with it.
   */
  private endpointCall(call: Call, endpoint: EndpointExtension): Call {
    try {
      call.operation = endpoint.operationOf(call);
    } catch (refusal) {
      call.transportRefusal = refusal;
    }
    return call;
  }

  /** The kind of the call, or `undefined` for a context type the module cannot judge. */
  kindOf(context: ExecutionContext): CallKind | undefined {
    const type = context.getType<string>();
    for (const kind of this.kinds) if (kind.accepts(type, context)) return kind;
    return undefined;
  }

  /**
   * Refuses a call the module cannot judge, with one log line that names it and says how to serve
   * it: a context type it does not read (catalogue N8), or a handler it has no rules for — one that
   * was not a method of the app's controllers and providers when the module started (an
   * instrumentation that swapped it afterwards, an `ExecutionContext` made by hand), judged
   * without its decorators otherwise. Nest then answers its own "Forbidden resource".
   */
  refuseUnsupported(context: ExecutionContext, what: 'type' | 'handler'): false {
    const type = context.getType<string>();
    const name = `${context.getClass()?.name}.${context.getHandler()?.name}`;
    if (what === 'type') {
      this.reportOnce(
        type,
        `Keycard refused a '${type}' call (${name}): it judges only http, graphql, ws and rpc contexts. Mark the handler @Public() to serve it without a token, or reach it through one of those contexts`,
      );
    } else {
      this.reportOnce(
        `handler ${name}`,
        `Keycard refused a call to ${name}: that handler was not a method of the app's controllers and providers when KeycardModule started, so its decorators were never read. ` +
          'Declare the class as a controller or provider of a module, or let an instrumentation wrap handlers before the app is initialised',
      );
    }
    return false;
  }

  private reportOnce(key: string, line: string, level: 'warn' | 'error' = 'warn'): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.options.logger[level](line);
  }

  /**
   * The resource a call is for: chosen from its HTTP request when it has one; otherwise the first
   * configured resource.
   * @throws ResourceNotConfiguredException when there is no request to derive one from and none is configured.
   */
  resourceFor(request: IncomingMessage | undefined): ProtectedResource {
    if (request !== undefined) return this.resources.forRequest(request);
    const [first] = this.options.resources;
    if (first !== undefined) return first;
    this.options.logger.error("A call without an HTTP request (gRPC, TCP) needs KeycardModule 'resource' to be configured");
    throw new ResourceNotConfiguredException();
  }

  /**
   * The agent a connection opened with, while its token lasts (`exp` + clock tolerance).
   * @throws InvalidTokenException `expired` once it has passed: every message re-checks (N5, N6).
   */
  stillValid(agent: AgentContext): AgentContext {
    if (this.lifecycle.expired(agent)) throw new InvalidTokenException('expired');
    return agent;
  }

  /** Any failure as a refusal; anything unexpected is a bad token, never a 500 (INV3), and reported by name only. */
  toDenial(error: unknown): KeycardException {
    if (error instanceof KeycardException) return error;
    this.options.logger.error(`Unexpected error while verifying a token: ${logSafe((error as Error)?.name ?? typeof error)}`);
    return new InvalidTokenException('token_malformed');
  }
}

/** The carrier of a call of any context (where the guard put the agent), without DI: for `@Agent()`. */
export function carrierOf(context: ExecutionContext): Carrier | undefined {
  switch (context.getType<string>()) {
    case 'http':
      return httpRequestOf<Carrier>(context);
    case 'graphql':
      return graphqlCarrier(context);
    case 'ws':
      return context.switchToWs().getClient<Carrier>();
    case 'rpc':
      // In an mcp-nest tool the agent is on the MCP endpoint's HTTP request (the RPC context is an `McpContext`).
      return mcpRequestOf(context) ?? context.switchToRpc().getContext<Carrier | undefined>() ?? context.switchToRpc().getData<Carrier>();
    default:
      return undefined;
  }
}
