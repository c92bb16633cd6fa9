import { Inject, Injectable, type OnModuleInit, type RequestMethod, type VersioningOptions } from '@nestjs/common';
import { METHOD_METADATA, MODULE_PATH, PATH_METADATA, VERSION_METADATA } from '@nestjs/common/constants.js';
import { addLeadingSlash } from '@nestjs/common/utils/shared.utils.js';
import {
  type ApplicationConfig, DiscoveryService, HttpAdapterHost, MetadataScanner, ModulesContainer,
} from '@nestjs/core';
import { RoutePathFactory } from '@nestjs/core/router/route-path-factory.js';
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import { KEYCARD_CLOCK, KEYCARD_GRANT, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { EndpointExtension } from '../decision/endpoint-extension.js';
import { type Declared, type PolicyParts, Requirement } from '../decision/policy/requirement.js';
import { ScopeHierarchy } from '../decision/policy/scope-hierarchy.js';
import type { KeycardOptions } from '../keycard-options.js';
import {
  type Class, classOf, declarationOn, declaringClasses, nearestDeclaration, requirementOf, type Target,
} from './declarations.js';
import { ProtectedResource } from './protected-resource.js';
import { chooseForPattern, type ResourceChoice, routerFoldsCase } from './resource-choice.js';
import { ResourceResolver } from './resource-resolver.js';
import { mcpEndpointRuleOf, type McpEndpointRule } from '../mcp/mcp-endpoint.decorator.js';
import { declaresFreshness } from '../decorators/require-freshness.decorator.js';
import { checkFieldResolverGuards, type FieldResolverRules, isFieldResolver } from '../contexts/graphql-field-resolvers.js';

/** What the guard needs to judge one handler, computed once. */
export interface RouteRules {
  /** `@Public()` is the nearest declaration (catalogue Q13). */
  readonly isPublic: boolean;
  /** `@OptionalAuth()` is the nearest declaration: served without a token, judged with one (catalogue Q26). */
  readonly optional: boolean;
  /**
   * The scopes of the first declared path (`@RequireScopes()`, then the first `anyOf` path), or
   * undefined when none are required: the `scope` hint of 401 challenges (catalogue Q12, Q25).
   */
  readonly scopes: readonly string[] | undefined;
  /** The same scopes space-joined, for the `scope` parameter of 401 challenges (catalogue Q12). */
  readonly scopeParam: string | undefined;
  /** Everything the handler requires of a verified agent, compiled; undefined when nothing. */
  readonly requirement: Requirement | undefined;
  /** The resource judging every request of this handler, when one is (the common case). */
  readonly resource: ProtectedResource | undefined;
  /** Otherwise how to choose it per request; undefined: by the request alone (see ResourceResolver). */
  readonly choice: Exclude<ResourceChoice, ProtectedResource> | undefined;
  /** A handler with several paths under different resources: the choice per matched route pattern. */
  readonly byPattern: ReadonlyMap<string, ResourceChoice> | undefined;
  /** `Class.method`, and the route patterns, for messages. */
  readonly name: string;
  /** The controller (or provider) class these rules were computed for. */
  readonly owner: Target;
  /** Set on MCP endpoints (`@McpEndpoint()`, mcp-nest controllers): per-tool scopes and `req.auth`. */
  readonly mcp: McpEndpointRule | undefined;
  /**
   * On an MCP endpoint, what serves it beyond the route (fixed at bootstrap): the operation each
   * call's body names, and what its transport reads after admission.
   */
  readonly endpoint: EndpointExtension | undefined;
  /** `@RequireFreshness()` on the handler or its class: its tokens are introspected, its revocation status must be known (X29, Q35). */
  readonly freshness: boolean;
}

/**
 * The route rules of the whole app, computed once at bootstrap from every controller and provider
 * (Nest's discovery): `@Public()` / `@RequireScopes()` with their precedence, contradictions (which
 * fail the bootstrap), which configured resource covers which route, and the exact
 * `scopes_supported` of the resource metadata.
 *
 * Precedence (catalogue Q13): the nearest declaration wins. The handler's own method first, then its
 * class, then each base class in turn; whichever of `@Public()` and `@RequireScopes()` is found
 * first decides, so a class-level `@Public()` never opens a method that requires scopes.
 *
 * Resources (catalogue Q17): each route's full pattern (global prefix, URI version, module path,
 * controller path, method path, as Nest registers it) is matched once against the configured
 * resources; the longest covering one on segment boundaries judges it, whatever the list order.
 * The request path is read only where a route parameter decides, so no spelling of a path (case,
 * percent-encoding, fragment, dot segments) can move a request to another resource.
 */
@Injectable()
export class RouteRulesRegistry implements OnModuleInit {
  private readonly byHandler = new WeakMap<Target, RouteRules>();
  private readonly byClass = new WeakMap<Target, WeakMap<Target, RouteRules>>();
  private scopes: readonly string[] = [];
  private readonly policyParts: PolicyParts;
  /** The endpoint serving MCP routes, given by the MCP layer ({@link serveEndpointsWith}). */
  private endpoint?: EndpointExtension;
  /** Told once, when the first handler that demands freshness is known (at bootstrap, or at its first call). */
  private freshnessListeners: (() => void)[] | undefined = [];

  /** @throws Error naming the entry and the rule it breaks, for a malformed `scopeHierarchy` (catalogue T4). */
  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) clock: Clock,
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly modules: ModulesContainer,
    private readonly adapterHost: HttpAdapterHost,
    private readonly resolver: ResourceResolver,
  ) {
    const hierarchy = ScopeHierarchy.compile(options.scopeHierarchy);
    this.policyParts = { hierarchy, clock, leewaySeconds: options.clockToleranceSeconds, logger: options.logger };
  }

  /**
   * Nest registers routes before it calls this hook, so the global prefix and versioning are final.
   * @throws Error naming the class and handler, when `@Public()` and `@RequireScopes()` are both
   *   declared on one method or one class (fails the bootstrap); and when a GraphQL field resolver
   *   requires scopes that Nest would never let a guard check (see `checkFieldResolverGuards`).
   */
  onModuleInit(): void {
    const scopes = new Set(this.options.scopesSupported);
    const patterns = this.routePatterns();
    const fieldResolvers = new Map<string, FieldResolverRules>();
    for (const type of declaringClasses(this.discovery)) {
      const names = this.scanner.getAllMethodNames(type.prototype);
      // Every class of the chain, also those no handler reaches: one target never declares both.
      const firstHandler = names.length > 0 ? ` (handler ${type.name}.${names[0]})` : '';
      for (let base: unknown = type; typeof base === 'function' && base !== Function.prototype; base = Object.getPrototypeOf(base)) {
        declarationOn(base, `${base.name}${firstHandler}`);
      }
      for (const name of names) {
        const handler = (type.prototype as Record<string, unknown>)[name];
        if (typeof handler !== 'function') continue;
        const rules = this.compute(handler, type, `${type.name}.${name}`, patterns.get(type)?.get(handler) ?? []);
        this.remember(handler, type, rules);
        rules.requirement?.declaredScopes.forEach((scope) => scopes.add(scope));
        if (isFieldResolver(handler)) fieldResolvers.set(rules.name, { ...rules, granted: hasGrant(handler, type) });
      }
    }
    this.rememberRegisteredHandlers();
    checkFieldResolverGuards([...fieldResolvers.values()], this.discovery, this.options.logger);
    // T28, Q29: the baseline option publishes exactly its list; by default every declared static scope.
    this.scopes = Object.freeze(this.options.baselineScopes ?? [...scopes]);
  }

  /**
   * The scopes named by the effective `@RequireScopes()` of the app (every `anyOf` path included,
   * argument-derived and hierarchy-implied scopes never), plus the configured ones; or exactly
   * `baselineScopes` when configured.
   */
  get scopesSupported(): readonly string[] {
    return this.scopes;
  }

  /**
   * A requirement declared outside a decorator (an MCP tool's scopes in `@McpEndpoint({ tools })`),
   * compiled like a handler's: through the scope hierarchy, with the module's clock and leeway.
   * @throws Error for `offline_access` (as a decorator would).
   */
  requirementFor(declared: Declared, name: string): Requirement | undefined {
    return Requirement.compile(declared, name, this.policyParts);
  }

  /**
   * Calls `listener` once some handler of the app demands freshness (`@RequireFreshness()`): now
   * when one does already, else when the first such handler is found. Lets the module add its
   * freshness check only to apps that use it, so no other call pays for it.
   */
  whenFreshnessDeclared(listener: () => void): void {
    if (this.freshnessListeners === undefined) listener();
    else this.freshnessListeners.push(listener);
  }

  /**
   * The endpoint that serves every MCP route (`RouteRules.endpoint`), given by the MCP layer while
   * the app is created, before {@link onModuleInit} compiles the rules: the registry and the
   * decision never import the MCP layer, and a call finds its endpoint in its rules.
   */
  serveEndpointsWith(endpoint: EndpointExtension): void {
    this.endpoint = endpoint;
  }

  /**
   * The rules of a handler at bootstrap (an MCP tool's, found by the MCP layer): computed now when
   * the handler was not among the classes this registry compiled.
   */
  rulesFor(handler: Target, type: Target): RouteRules {
    return this.knownRules(handler, type) ?? this.remember(handler, type, this.compute(handler, type, `${(type as Class).name}.${(handler as Class).name}`, []));
  }

  /**
   * The rules of a handler as a call reaches it: one or two WeakMap lookups of what was compiled at
   * bootstrap; `undefined` for a handler that was not among the app's classes then (see
   * `KeycardContexts.callOf`, which refuses such a call rather than judge it without its decorators).
   */
  knownRules(handler: Target, type: Target): RouteRules | undefined {
    const rules = this.byHandler.get(handler);
    if (rules !== undefined && rules.owner === type) return rules;
    return this.byClass.get(type)?.get(handler) ?? (rules === undefined ? this.standInRules(handler, type) : undefined);
  }

  /**
   * The rules of a function standing in for a method of `type` that was compiled: one named like
   * it (or `bound <name>`), which this registry never saw. Two real cases: OpenTelemetry's
   * `instrumentation-nestjs-core` (NestJS < 12, part of `auto-instrumentations-node`) hands Nest's
   * router, for every route as it is registered, a tracing function in place of the controller's
   * method, with the method's name and a copy of its metadata; and a request-scoped (or durable)
   * class that binds its methods in its constructor (`this.list = this.list.bind(this)`) gives
   * each request's instance its own bound function, which Nest registers (`instance[method]`).
   * Guards see that function as the handler. It is judged by the rules compiled for the method of
   * `type` it is named after (never by anything it carries). Any other unknown function stays
   * unknown (and its call refused). Found again at each call (a name and three lookups), never
   * remembered: a call only reads this registry, which is written while the app starts; a bound
   * stand-in is made afresh for each request and would leave an entry nothing reads again.
   */
  private standInRules(handler: Target, type: Target): RouteRules | undefined {
    const compiled = this.byClass.get(type);
    if (compiled === undefined || typeof handler !== 'function') return undefined;
    const name = handler.name.startsWith(BOUND) ? handler.name.slice(BOUND.length) : handler.name;
    if (name === '') return undefined;
    const method = ((type as { prototype?: Record<string, unknown> }).prototype)?.[name];
    return typeof method === 'function' ? compiled.get(method) : undefined;
  }

  /**
   * The resource judging a request whose rules fix none.
   * @throws ResourceNotConfiguredException (500) when no configured resource covers the route (M8).
   * @throws InvalidRequestException (400) for a path with dot or empty segments, where the path decides.
   */
  resourceFor(rules: RouteRules, request: object, raw: IncomingMessage): ProtectedResource {
    let choice: ResourceChoice | undefined = rules.choice;
    if (rules.byPattern !== undefined) {
      const pattern = matchedPattern(request);
      choice = pattern === undefined ? undefined : rules.byPattern.get(pattern);
      if (choice === undefined) choice = [...new Set(rules.byPattern.values())].flatMap(candidatesOf);
    }
    if (choice instanceof ProtectedResource) return choice;
    if (choice === null) {
      this.resolver.unconfigured(`No configured 'resource' covers ${rules.name}; add one to KeycardModule 'resource'`);
    }
    return choice === undefined ? this.resolver.forRequest(raw) : this.resolver.forPath(choice, raw);
  }

  /**
   * Nest registers a handler with `instance[method]`: the prototype's method, unless an APM
   * `instrument` (`@nestjs/observe`'s `ObserveInstrument`) hands the controller or provider out as
   * a Proxy whose methods are tracing wrappers. Such a wrapper gets the rules of the method it
   * stands for, route pattern and resource included: a wrapper carries none of its decorators.
   */
  private rememberRegisteredHandlers(): void {
    for (const wrapper of [...this.discovery.getControllers(), ...this.discovery.getProviders()]) {
      const type = classOf(wrapper);
      const instance = wrapper.instance as Record<string, unknown> | null | undefined;
      if (type === undefined || instance == null) continue;
      for (const name of this.scanner.getAllMethodNames(type.prototype)) {
        const own = (type.prototype as Record<string, unknown>)[name];
        const rules = typeof own === 'function' ? this.byClass.get(type)?.get(own) : undefined;
        const registered = rules === undefined ? undefined : instance[name];
        if (typeof registered === 'function' && registered !== own) this.remember(registered, type, rules!);
      }
    }
  }

  private remember(handler: Target, type: Target, rules: RouteRules): RouteRules {
    if (!this.byHandler.has(handler)) this.byHandler.set(handler, rules);
    let ofClass = this.byClass.get(type);
    if (ofClass === undefined) this.byClass.set(type, (ofClass = new WeakMap()));
    ofClass.set(handler, rules);
    return rules;
  }

  private compute(handler: Target, type: Target, name: string, patterns: readonly string[]): RouteRules {
    const declared = nearestDeclaration(handler, type, name);
    const requirement = declared.isPublic || declared.optional ? undefined : Requirement.compile(requirementOf(handler, type), name, this.policyParts);
    const scopes = requirement?.scopeParam === undefined ? undefined : requirement.alternatives[0].scopes;
    let resource: ProtectedResource | undefined;
    let choice: RouteRules['choice'];
    let byPattern: Map<string, ResourceChoice> | undefined;
    if (!declared.isPublic && this.options.resources.length > 0) {
      const choices = this.choicesOf(patterns);
      const distinct = [...new Set(choices.values())];
      if (distinct.length > 1) byPattern = choices;
      else if (distinct.length === 1 && distinct[0] instanceof ProtectedResource) resource = distinct[0];
      else if (distinct.length === 1) choice = distinct[0] as Exclude<ResourceChoice, ProtectedResource>;
      else if (this.options.resources.length === 1 && this.options.resources[0].segments.length === 0) {
        // Not a route known at bootstrap (a resolver, a gateway, or the app's configuration could not
        // be read): an origin covers every path; otherwise ResourceResolver decides per request.
        resource = this.options.resources[0];
      }
      if (distinct.includes(null)) {
        this.options.logger.warn(
          `No configured 'resource' covers ${name} (${patterns.join(', ')}): its requests answer 500 until one does`,
        );
      }
    }
    const freshness = !declared.isPublic && declaresFreshness(handler, type);
    if (freshness) this.freshnessDeclared();
    const mcp = mcpEndpointRuleOf(handler, type);
    return Object.freeze({
      freshness,
      isPublic: declared.isPublic,
      optional: declared.optional,
      scopes,
      scopeParam: requirement?.scopeParam,
      requirement,
      resource,
      choice,
      byPattern,
      name,
      owner: type,
      mcp,
      endpoint: mcp === undefined ? undefined : this.endpoint,
    });
  }

  private freshnessDeclared(): void {
    const listeners = this.freshnessListeners;
    this.freshnessListeners = undefined;
    for (const listener of listeners ?? []) listener();
  }

  /** The resource choice of each pattern, keyed as the router reports the matched pattern. */
  private choicesOf(patterns: readonly string[]): Map<string, ResourceChoice> {
    const choices = new Map<string, ResourceChoice>();
    const adapter = this.adapterHost.httpAdapter;
    const foldCase = routerFoldsCase(adapter);
    for (const pattern of patterns) {
      const choice = chooseForPattern(this.options.resources, pattern, foldCase);
      choices.set(pattern, choice);
      const normalized = (adapter as { normalizePath?: (path: string) => string } | undefined)?.normalizePath?.(pattern);
      if (normalized !== undefined) choices.set(normalized, choice);
    }
    return choices;
  }

  /**
   * Every route pattern of every controller handler, as Nest's router registers it (the router's own
   * path factory, fed with the app's global prefix and versioning). Empty when the app's
   * configuration cannot be read: resources are then chosen per request from the path.
   */
  private routePatterns(): Map<Target, Map<Target, string[]>> {
    const result = new Map<Target, Map<Target, string[]>>();
    const config = applicationConfigOf(this.modules);
    if (config === undefined) return result;
    const factory = new RoutePathFactory(config);
    const versioningOptions = config.getVersioning();
    const globalPrefix = config.getGlobalPrefix() ? `/${config.getGlobalPrefix().replace(/^\/+/, '')}` : '';
    for (const wrapper of this.discovery.getControllers()) {
      const type = classOf(wrapper);
      if (type === undefined) continue;
      const host = wrapper.host?.metatype as Target | undefined;
      const modulePath = host === undefined
        ? undefined
        : (Reflect.getMetadata(MODULE_PATH + this.modules.applicationId, host) ?? Reflect.getMetadata(MODULE_PATH, host)) as string | undefined;
      const controllerVersion = versioningOptions
        ? (Reflect.getMetadata(VERSION_METADATA, type) ?? versioningOptions.defaultVersion)
        : undefined;
      const ctrlPaths = ([] as string[]).concat((Reflect.getMetadata(PATH_METADATA, type) as string | string[] | undefined) ?? '/');
      // Both joined as Nest's router joins them, so the patterns are the ones it registered.
      let byHandler = result.get(type);
      if (byHandler === undefined) result.set(type, (byHandler = new Map()));
      for (const name of this.scanner.getAllMethodNames(type.prototype)) {
        const handler = (type.prototype as Record<string, unknown>)[name];
        if (typeof handler !== 'function') continue;
        const methodPaths = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
        if (methodPaths === undefined) continue;
        const requestMethod = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod;
        const methodVersion = Reflect.getMetadata(VERSION_METADATA, handler) as VersioningOptions['defaultVersion'];
        const paths = byHandler.get(handler) ?? [];
        for (const ctrlPath of ctrlPaths) {
          for (const methodPath of ([] as string[]).concat(methodPaths)) {
            paths.push(
              ...factory.create(
                { ctrlPath: addLeadingSlash(ctrlPath), methodPath: addLeadingSlash(methodPath), modulePath, globalPrefix, versioningOptions, controllerVersion, methodVersion },
                requestMethod,
              ),
            );
          }
        }
        byHandler.set(handler, paths);
      }
    }
    return result;
  }
}

/** The name prefix `Function.prototype.bind` gives a bound function. */
const BOUND = 'bound ';

function candidatesOf(choice: ResourceChoice): readonly ProtectedResource[] {
  if (choice === null) return [];
  return choice instanceof ProtectedResource ? [choice] : choice;
}

/** The route pattern the router matched: Express `req.route.path`, Fastify `request.routeOptions.url`. */
function matchedPattern(request: object): string | undefined {
  const express = (request as { route?: { path?: unknown } }).route?.path;
  if (typeof express === 'string') return express;
  const fastify = (request as { routeOptions?: { url?: unknown } }).routeOptions?.url;
  return typeof fastify === 'string' ? fastify : undefined;
}

/**
 * The app's configuration (global prefix, versioning) as the router used it. Nest keeps it on its
 * container, which every module holds; not a public API, hence the checks and the fallback.
 */
function applicationConfigOf(modules: ModulesContainer): ApplicationConfig | undefined {
  for (const module of modules.values()) {
    const config = (module as unknown as { container?: { applicationConfig?: ApplicationConfig } }).container?.applicationConfig;
    if (typeof config?.getGlobalPrefix === 'function' && typeof config.getVersioning === 'function') return config;
    return undefined;
  }
  return undefined;
}

/** Whether `@Grant()` names resources on the handler or its class (or a base class). */
function hasGrant(handler: Target, type: Target): boolean {
  return Reflect.getMetadata(KEYCARD_GRANT, handler) !== undefined || Reflect.getMetadata(KEYCARD_GRANT, type) !== undefined;
}
