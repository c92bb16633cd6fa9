import {
  type CanActivate, type ExceptionFilter, type ExecutionContext, Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy,
} from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Call } from '../decision/call.js';
import { CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import type { EndpointExtension, EndpointOperation } from '../decision/endpoint-extension.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_MCP_ENDPOINT, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import type { ProtectedResource } from '../resource-server/protected-resource.js';
import { requestState } from '../resource-server/request-state.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import { RouteRulesRegistry, type RouteRules } from '../resource-server/route-rules.registry.js';
import { McpAuthInfoCache } from './mcp-auth-info.js';
import { extendsMcpNestBase, type McpEndpointRule } from './mcp-endpoint.decorator.js';
import { McpOriginPolicy } from './mcp-origin.js';
import { McpSessions } from './mcp-sessions.js';
import { claimRequest, leaveToolClass, serveToolClass, type ToolApp } from './mcp-tool-apps.js';
import { checkMcpTransport } from './mcp-transport-checks.js';
import { endAtExpiry } from './mcp-stream-expiry.js';
import { filterToolListing } from './mcp-tool-listing.js';

/** Metadata key of @rekog/mcp-nest's `@Tool()` (read by value: mcp-nest is never imported). */
const MCP_NEST_TOOL = 'mcp:tool';
/** The request property mcp-nest's step-up challenge reads its `resource_metadata` from. */
const MCP_NEST_RESOURCE_METADATA_URL = Symbol.for('@rekog/mcp-nest:resource-metadata-url');

/** `@RequireScopes()` / `@Public()` of one mcp-nest tool, from the route rules registry. */
type ToolRule = Pick<RouteRules, 'isPublic' | 'scopes' | 'requirement'>;

/** The request a guard saw, as the MCP layer needs it. */
type Carrier = Record<PropertyKey, unknown>;

/** One request the guard admitted on an MCP endpoint, verified with `token` for `resource`. */
export interface McpAdmission {
  /** The framework's request (Express, Fastify). */
  readonly request: object;
  /** Where it is answered; `undefined` outside HTTP. */
  readonly response: ServerResponse | undefined;
  readonly rule: McpEndpointRule;
  readonly agent: AgentContext;
  readonly token: string;
  readonly resource: ProtectedResource;
}

/**
 * MCP servers in the app (catalogue N11–N14). At bootstrap: finds the mcp-nest tools (`@Tool()`
 * methods of `@McpController()` classes) and their `@RequireScopes()` / `@Public()`, puts a guard
 * on every tool controller so each tool call is judged with or without `inheritAppConfig` — one
 * guard per class for every app of the process, which judges each call with the guard of the app
 * serving it ({@link ToolApp}, `mcp-tool-apps.ts`) — and fails
 * the bootstrap when tools exist but no guarded controller serves them (the quick start's
 * self-mounted endpoint, where no Nest guard runs). Per request (MCP endpoints only): the tool a
 * `tools/call` names, what the MCP transport reads off the request (`auth`, `user`), the session
 * the request names (only its owner's: {@link McpSessions}), and the end of its answer at the
 * token's expiry ({@link endAtExpiry}).
 * The tool calls themselves are judged by the guard as `rpc` contexts (`lib/contexts/mcp.context.ts`).
 */
@Injectable()
export class McpTools implements OnApplicationBootstrap, OnModuleDestroy, EndpointExtension, ToolApp {
  private readonly tools = new Map<string, ToolRule>();
  /** Every tool: its name, method and controller class. */
  private readonly toolMethods: { name: string; method: object; type: object }[] = [];
  private readonly toolClasses = new Set<object>();
  /** Tools of MCP SDK endpoints, declared with `@McpEndpoint({ tools })`: name → scopes. */
  private readonly declaredTools = new Map<string, readonly string[]>();
  private readonly endpointClasses: string[] = [];
  /** The controllers built on mcp-nest's bases, found once here: a batch to one is judged per tool in mcp-nest's pipeline. */
  private readonly mcpNestEndpoints = new Set<object>();
  private readonly authInfos = new McpAuthInfoCache();
  private readonly sessions = new McpSessions();
  private readonly origins: McpOriginPolicy;
  /** This app's guard, given by {@link guardTools}. */
  private guard?: CanActivate;
  /** {@link ToolApp}: this app's token-exchange filter, given by {@link guardTools}. */
  exchangeFilter!: ExceptionFilter;
  private unknownAppReported = false;
  /**
   * The instance registered among the apps serving each tool class. Under an APM `instrument`
   * (`@nestjs/observe`) the hooks may run with a Proxy of it as `this`: it is unregistered by this
   * reference, so a closed app never stays among the apps serving a class.
   */
  private readonly registered: McpTools = this;

  constructor(
    modules: ModulesContainer,
    private readonly routeRules: RouteRulesRegistry,
    private readonly lifecycle: CarrierLifecycle,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
  ) {
    this.origins = new McpOriginPolicy(options.resources.map((r) => r.id), options.mcpAllowedOrigins);
    // Every MCP route's rules name this as their endpoint: compiled after every constructor ran.
    routeRules.serveEndpointsWith(this);
    for (const module of modules.values()) {
      for (const wrapper of module.controllers.values()) {
        const type = wrapper.metatype as (new (...args: never[]) => object) | null;
        if (typeof type !== 'function') continue;
        if (extendsMcpNestBase(type)) {
          this.endpointClasses.push(type.name);
          this.mcpNestEndpoints.add(type);
        }
        this.collectTools(type);
        this.collectDeclaredTools(type);
      }
    }
  }

  /**
   * Puts the guard on every tool controller (class-level `@UseGuards`), so mcp-nest's RPC pipeline
   * judges each tool call even without `inheritAppConfig`; and the module's token-exchange filter
   * (class-level `@UseFilters`, before the controller's own, which Nest tries first), so a tool whose
   * grant failed answers the refusal's text rather than "Internal server error" (catalogue Q8).
   * What goes on the class is one module-level guard and filter, bound once: class metadata is the
   * process's, and several apps of one process (tests, one app per port) may share a tool class.
   * They judge and answer each call with `guard` and `exchangeFilter` of the app serving it — the
   * app whose guard admitted the call's request on its MCP endpoint ({@link operationOf}), else the
   * only app serving the class — and refuse the call when they cannot tell. This app serves its
   * tool classes until it closes ({@link onModuleDestroy}).
   * Runs while the app is created: mcp-nest binds its handlers (and reads their guards and filters)
   * before any lifecycle hook.
   */
  guardTools(guard: CanActivate, exchangeFilter: ExceptionFilter): true {
    this.guard = guard;
    this.exchangeFilter = exchangeFilter;
    for (const type of this.toolClasses) serveToolClass(type, this.registered);
    return true;
  }

  /** {@link ToolApp}: judges a tool call of this app with its guard. */
  judge(context: ExecutionContext): ReturnType<CanActivate['canActivate']> {
    return this.guard!.canActivate(context);
  }

  /** {@link ToolApp}: one error line per app, naming the tool and how to wire the endpoint. */
  reportUnknownApp(call: string): void {
    if (this.unknownAppReported) return;
    this.unknownAppReported = true;
    this.options.logger.error(
      `Keycard refused MCP tool ${call}: several apps in this process serve its class and the call's request did not pass the guard of one of them on an MCP endpoint ` +
        '(a self-mounted transport, stdio), so its app is unknown. Mount each app\'s transport as a controller behind the guard: ' +
        "`@Controller('mcp') export class McpController extends McpHttpControllerFor(transport) {}`, or give each app its own tool classes",
    );
  }

  /** This app closed: its guard and filter no longer judge nor answer calls to the tool classes it served. */
  onModuleDestroy(): void {
    for (const type of this.toolClasses) leaveToolClass(type, this.registered);
  }

  /**
   * N14: mcp-nest tools but no controller built on mcp-nest's bases (`McpHttpControllerFor()`,
   * `StreamableHttpController`) means its transport self-mounts on the HTTP adapter, where no Nest
   * guard runs: refuse to start rather than serve it unguarded.
   * @throws Error naming how to mount the endpoint behind the guard.
   */
  onApplicationBootstrap(): void {
    // The same rules the guard applies to the tool's own handler (nearest declaration wins).
    for (const [name, scopes] of this.declaredTools) {
      // Judged by the policy like a decorated tool: its requirement compiled from the declared scopes.
      this.tools.set(name, { isPublic: false, scopes, requirement: this.routeRules.requirementFor({ scopes }, `MCP tool ${name}`) });
    }
    for (const { name, method, type } of this.toolMethods) {
      const rules = this.routeRules.rulesFor(method, type);
      if (this.declaredTools.has(name) && !sameScopes(this.declaredTools.get(name), rules.scopes)) throw conflictingTool(name);
      this.tools.set(name, rules);
    }
    if (this.toolMethods.length === 0 || this.endpointClasses.length > 0) return;
    throw new Error(
      `KeycardModule: the app has MCP tools (${this.toolMethods.map((t) => t.name).join(', ')}) but no MCP endpoint behind the guard. ` +
        "@rekog/mcp-nest's StreamableHttpTransport mounts itself on the HTTP adapter when no controller claims it, and no Nest guard runs there. " +
        "Mount it as a controller: `@Controller('mcp') export class McpController extends McpHttpControllerFor(transport) {}` " +
        '(the transport then does not self-mount); for an SDK transport in your own controller, mark it `@McpEndpoint()`.',
    );
  }

  /**
   * {@link EndpointExtension}: the tool a `tools/call` names, looked up once per call: served
   * without a token when `@Public()` (N12), else needing the endpoint's scopes and its own
   * ({@link requiredScopes}, so a 403 names them all).
   */
  operationOf(call: Call): EndpointOperation | undefined {
    // The tool calls this request carries are this app's: judged by its guard, answered by its filter.
    claimRequest(call.carrier, this.registered);
    this.checkTransport(call.context); // Origin, then header–body: before any token work (Q30, Q31)
    const body = (call.carrier as { body?: unknown }).body;
    if (Array.isArray(body)) return this.batchOperation(call, body);
    const tool = this.toolOf(body);
    if (tool === undefined) return undefined;
    return { isPublic: tool.isPublic, scopes: this.scopesWith(call.rules.scopes, tool), requirement: tool.requirement };
  }

  /** {@link EndpointExtension}: what the transport reads after the core admitted `call` ({@link admitted}, {@link admittedAnonymous}). */
  admittedCall(call: Call): void {
    const { kind, context, carrier, rules, agent, token, resource } = call;
    if (agent === undefined) {
      this.admittedAnonymous(carrier);
      return;
    }
    if (rules.mcp === undefined || token === undefined || resource === undefined) return;
    this.admitted({ request: carrier, response: kind.httpResponse(context, carrier), rule: rules.mcp, agent, token, resource });
  }

  /**
   * The transport checks of a request to an MCP endpoint, before any token work (catalogue U1–U8,
   * Q30, Q31): its `Origin`, then its headers against its body. Only HTTP calls carry them.
   * @throws McpTransportRefusal (403 forbidden origin, 400 `HeaderMismatch`).
   */
  checkTransport(context: ExecutionContext): void {
    if (context.getType() !== 'http') return;
    const request = context.switchToHttp().getRequest<{ body?: unknown }>();
    checkMcpTransport(rawRequestOf(request), request.body, this.origins);
  }

  /** The rule of the tool a single `tools/call` names (batches are judged per tool in the pipeline). */
  toolOf(body: unknown): ToolRule | undefined {
    const call = body as { method?: unknown; params?: { name?: unknown } } | null | undefined;
    if (typeof call !== 'object' || call === null || Array.isArray(call) || call.method !== 'tools/call') return undefined;
    const name = call.params?.name;
    return typeof name === 'string' ? this.tools.get(name) : undefined;
  }

  /**
   * The scopes a request to an MCP endpoint needs: the endpoint's and, for a `tools/call` of a
   * scoped tool, the tool's, so the 403 names them all and an MCP client steps up once (N12).
   */
  requiredScopes(endpointScopes: readonly string[] | undefined, body: unknown): readonly string[] | undefined {
    const tool = this.toolOf(body);
    return tool === undefined ? endpointScopes : this.scopesWith(endpointScopes, tool);
  }

  /**
   * A JSON-RPC batch (MCP 2025-03-26; the MCP SDK's transport accepts one under later versions
   * too). mcp-nest judges each of its calls in its tool pipeline (the guard is on every tool
   * controller), but the SDK's transport in an app's controller has no pipeline: there every scope
   * that the batch's tools declare is required here, together, so one refusal names them all (T26)
   * and no tool of the batch runs without its scopes.
   */
  private batchOperation(call: Call, batch: readonly unknown[]): EndpointOperation | undefined {
    if (this.mcpNestEndpoints.has(call.rules.owner)) return undefined;
    const scopes = new Set<string>();
    for (const message of batch) {
      const tool = this.toolOf(message);
      if (tool !== undefined && !tool.isPublic) tool.scopes?.forEach((scope) => scopes.add(scope));
    }
    if (scopes.size === 0) return undefined;
    const toolScopes = [...scopes];
    const requirement = this.routeRules.requirementFor({ scopes: toolScopes }, `MCP tools of a batch to ${call.rules.name}`);
    return { isPublic: false, scopes: this.scopesWith(call.rules.scopes, { isPublic: false, scopes: toolScopes, requirement }), requirement };
  }

  private scopesWith(endpointScopes: readonly string[] | undefined, tool: ToolRule): readonly string[] | undefined {
    if (tool.isPublic || tool.scopes === undefined) return endpointScopes;
    return endpointScopes === undefined ? tool.scopes : [...new Set([...endpointScopes, ...tool.scopes])];
  }

  /**
   * After the guard admitted a request to an MCP endpoint: the session it names must be its
   * principal's (else the transport sees an unknown session: 404, audit reason
   * `session_principal_mismatch`); its answer ends when the token expires; the agent goes on the
   * Node request too (mcp-nest reads `user` there, also under Fastify), with the metadata URL for
   * mcp-nest's own step-up challenge, and `auth` in the SDK's `AuthInfo` shape when the route asks
   * for it (built once per token).
   */
  admitted(call: McpAdmission): void {
    const { request, response, agent } = call;
    const raw = rawRequestOf(request);
    if (this.sessions.admit(raw, response, agent) === 'mismatch') this.refusedSession(request, raw, agent);
    if (response !== undefined) endAtExpiry(this.lifecycle, response, agent);
    if (response !== undefined && this.options.mcpToolListing === 'permitted' && isToolList((request as { body?: unknown }).body)) {
      filterToolListing(response, { permits: (name) => this.permits(agent, name), warnPublic: () => this.warnPublicListing() });
    }
    const node = raw as unknown as Carrier;
    node.user = agent;
    node[MCP_NEST_RESOURCE_METADATA_URL] = call.resource.metadataUrl;
    if (!call.rule.authInfo) return;
    const info = this.authInfos.for(agent, call.token, call.resource);
    node.auth = info;
    (request as Carrier).auth = info;
  }

  /**
   * A tokenless call of a `@Public()` tool: admitted, but in no one's session (every session has an
   * owner: an `initialize` without a token is refused). Always `true`.
   */
  admittedAnonymous(request: object): true {
    const raw = rawRequestOf(request);
    if (this.sessions.admit(raw, undefined, undefined) === 'mismatch') this.refusedSession(request, raw, undefined);
    return true;
  }

  /**
   * Whether `agent` may call the tool named so, judged on its static scopes (any declared path,
   * through the scope hierarchy): what a per-caller listing shows (U10). A tool the module knows no
   * requirement of is listed (it needs the endpoint's scopes only, which the caller holds). The
   * call itself is judged in full (claims, arguments) by the guard (U11).
   */
  private permits(agent: AgentContext, name: string): boolean {
    const tool = this.tools.get(name);
    if (tool === undefined || tool.isPublic || tool.requirement === undefined) return true;
    return tool.requirement.alternatives.some((path) => path.heldBy(agent.scopes));
  }

  private warnPublicListing(): void {
    this.options.logger.warn('mcp tools/list marked cacheScope "public" by the app is filtered per caller (mcpToolListing: permitted): answered "private"');
  }

  /** The session refusal, for the request's audit line (its status is the transport's 404) and the log. */
  private refusedSession(request: object, raw: IncomingMessage, agent: AgentContext | undefined): void {
    requestState(request).denial = 'session_principal_mismatch';
    const who = agent === undefined ? '' : ` agent=${logSafe(agent.clientId)} user=${logSafe(agent.subject)} jti=${logSafe(agent.tokenId)}`;
    this.options.logger.warn(`denied mcp ${logSafe(raw.method)} session status=404 reason=session_principal_mismatch${who}`);
  }

  /** The `tools` of `@McpEndpoint()` on the class and its route handlers. */
  private collectDeclaredTools(type: new (...args: never[]) => object): void {
    const handlers = Object.getOwnPropertyNames(type.prototype as object).map((key) => (Object.getOwnPropertyDescriptor(type.prototype, key)?.value as unknown));
    for (const target of [type, ...handlers]) {
      if (typeof target !== 'function') continue;
      const rule = Reflect.getMetadata(KEYCARD_MCP_ENDPOINT, target) as McpEndpointRule | undefined;
      for (const [name, scopes] of Object.entries(rule?.tools ?? {})) this.declareTool(name, scopes);
    }
  }

  private declareTool(name: string, scopes: readonly string[]): void {
    if (!Array.isArray(scopes) || scopes.some((s) => typeof s !== 'string' || s === '' || /\s/.test(s))) {
      throw new Error(`KeycardModule: @McpEndpoint({ tools }) gives tool ${JSON.stringify(name)} scopes that are not a list of scope names`);
    }
    const known = this.declaredTools.get(name);
    if (known !== undefined && !sameScopes(known, scopes)) throw conflictingTool(name);
    this.declaredTools.set(name, Object.freeze([...new Set(scopes)]));
  }

  private collectTools(type: new (...args: never[]) => object): void {
    for (let proto = type.prototype as object | null; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
      for (const key of Object.getOwnPropertyNames(proto)) {
        const method = (Object.getOwnPropertyDescriptor(proto, key)?.value as unknown);
        if (key === 'constructor' || typeof method !== 'function') continue;
        const tool = Reflect.getMetadata(MCP_NEST_TOOL, method) as { name?: string } | undefined;
        if (tool === undefined) continue;
        this.toolMethods.push({ name: tool.name ?? key, method, type });
        this.toolClasses.add(type);
      }
    }
  }
}

/** A single `tools/list` request (a batch is not a 2026-07-28 shape and is left alone). */
function isToolList(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && (body as { method?: unknown }).method === 'tools/list';
}

function sameScopes(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  return [...new Set(a ?? [])].sort().join(' ') === [...new Set(b ?? [])].sort().join(' ');
}

/** One tool name, two requirements: which applies would depend on the endpoint, and a tool name is all a call carries. */
function conflictingTool(name: string): Error {
  return new Error(`KeycardModule: MCP tool ${JSON.stringify(name)} is declared with different scopes on two endpoints; give the tools distinct names`);
}
