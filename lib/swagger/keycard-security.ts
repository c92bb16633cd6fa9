import type { INestApplicationContext } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { ApiSecurity, type OpenAPIObject, type SecuritySchemeObject } from '@nestjs/swagger';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { type Class, declaringClasses, nearestDeclaration, requirementOf } from '../resource-server/declarations.js';
import { ZoneMetadataService } from '../zone/zone-metadata.service.js';

/** The swagger metadata keys this file reads, as `@nestjs/swagger` (10–12) writes them. */
const API_SECURITY = 'swagger/apiSecurity';
/** Nest's route metadata: a method with a path is a route handler (`@nestjs/common` PATH_METADATA). */
const PATH_METADATA = 'path';

/** Options of {@link withKeycardSecurity}. */
export interface KeycardSecurityOptions {
  /** Name of the security scheme in `components.securitySchemes`. @default 'keycard' */
  name?: string;
}

/**
 * Describes the app's Keycard protection in an OpenAPI document, from the module's own decorators
 * (nothing to annotate twice): call it on the `DocumentBuilder` output, before
 * `SwaggerModule.createDocument`.
 *
 * - `components.securitySchemes[name]`: an OAuth 2.0 scheme whose `authorizationCode` and
 *   `clientCredentials` flows carry the zone's endpoints from its metadata (RFC 8414) and every
 *   scope the app uses, so Swagger UI can sign in; a plain `bearer` (JWT) scheme while the zone's
 *   metadata cannot be fetched.
 * - every route the guard protects (not `@Public()`) gets the requirement `{ [name]: scopes }`,
 *   with its `@RequireScopes()` scopes, resolved with the guard's own precedence (method, then
 *   class, then base classes); one requirement per `@RequireScopes.anyOf()` path (OpenAPI
 *   alternatives), plus the empty requirement `{}` on `@OptionalAuth()` routes; requirements an
 *   app set itself with `@ApiSecurity()` are kept.
 *   Routes a controller inherits (mcp-nest's `McpHttpControllerFor()` endpoints) get it on the
 *   controller class, since their handler is shared with every other subclass.
 * - the scopes are those of every `@RequireScopes()` in the app (routes, resolvers, gateways, MCP
 *   tools) and `scopesSupported`, read from the decorators: the same whether it runs before or
 *   after `app.init()`.
 *
 * The discovery endpoints are never in the document: they are mounted on the HTTP adapter, not
 * declared as Nest routes.
 *
 * @param app the application (after `NestFactory.create`; before or after `init()` / `listen()`).
 * @param config the document configuration (`new DocumentBuilder()…build()`); returned, extended.
 * @example
 * ```ts
 * const config = new DocumentBuilder().setTitle('Orders').build();
 * const document = SwaggerModule.createDocument(app, await withKeycardSecurity(app, config));
 * ```
 * @publicApi
 */
export async function withKeycardSecurity<T extends Omit<OpenAPIObject, 'paths'>>(
  app: INestApplicationContext,
  config: T,
  options: KeycardSecurityOptions = {},
): Promise<T> {
  const name = options.name ?? 'keycard';
  const moduleOptions = app.get<KeycardOptions>(KEYCARD_OPTIONS);
  const classes = declaringClasses(app.get(DiscoveryService));
  const scanner = app.get(MetadataScanner);
  for (const route of protectedRoutes(classes, scanner)) describeRoute(route, name);
  const scopes = Object.fromEntries([...scopesInUse(classes, scanner, moduleOptions)].map((scope) => [scope, '']));
  const scheme = await securityScheme(app, moduleOptions, scopes);
  config.components = { ...config.components, securitySchemes: { ...config.components?.securitySchemes, [name]: scheme } };
  return config;
}

interface ProtectedRoute {
  readonly type: Class;
  readonly methodName: string;
  readonly handler: object;
  /** The handler is a base class's method (an mcp-nest controller): shared with its other subclasses. */
  readonly inherited: boolean;
  /**
   * OpenAPI security requirements, alternatives (OpenAPI 3 §4.8.30): one scope list per
   * `@RequireScopes.anyOf()` path (each with the `@RequireScopes()` scopes), and an empty one
   * for `@OptionalAuth()` (anonymous callers are served too).
   */
  readonly alternatives: readonly (readonly string[] | 'anonymous')[];
}

/**
 * Every controller route the guard protects, with its required scopes. Read from the declarations
 * themselves (the guard's own precedence, `nearestDeclaration`), never through the guard's route
 * registry: before `app.init()` that registry has not seen the routes, and asking it then would
 * cache rules computed without them.
 */
function protectedRoutes(classes: readonly Class[], scanner: MetadataScanner): ProtectedRoute[] {
  const routes: ProtectedRoute[] = [];
  for (const type of classes) {
    const prototype = type.prototype as Record<string, unknown>;
    for (const methodName of scanner.getAllMethodNames(prototype)) {
      const handler = prototype[methodName];
      if (typeof handler !== 'function' || Reflect.getMetadata(PATH_METADATA, handler) === undefined) continue;
      if (Reflect.getMetadata(PATH_METADATA, type) === undefined) continue; // a provider's method, not a route
      const declared = nearestDeclaration(handler, type, `${type.name}.${methodName}`);
      if (declared.isPublic) continue;
      const inherited = !Object.prototype.hasOwnProperty.call(prototype, methodName);
      routes.push({ type, methodName, handler, inherited, alternatives: alternativesOf(handler, type, declared.optional) });
    }
  }
  return routes;
}

/**
 * Adds `{ [name]: scopes }` to one route's operation, unless the app described it itself. An
 * inherited handler is one function shared by every subclass (mcp-nest's controllers), so its
 * requirement goes on the controller class, which `@nestjs/swagger` merges into each of its
 * operations.
 */
function describeRoute(route: ProtectedRoute, name: string): void {
  const target = route.inherited ? route.type : route.handler;
  const existing = (Reflect.getOwnMetadata(API_SECURITY, target) ?? []) as Record<string, unknown>[];
  if (existing.some((requirement) => name in requirement)) return; // already described
  for (const alternative of route.alternatives) {
    const decorator = alternative === 'anonymous' ? ApiSecurity({}) : ApiSecurity(name, [...alternative]);
    if (route.inherited) decorator(route.type);
    else decorator(route.type.prototype, route.methodName, { value: route.handler });
  }
}

/** The scope lists that satisfy a handler's declared requirement, in declaration order. */
function alternativesOf(handler: object, type: Class, optional: boolean): (readonly string[] | 'anonymous')[] {
  if (optional) return ['anonymous', []];
  const declared = requirementOf(handler, type);
  const scopes = declared.scopes ?? [];
  return declared.anyOf === undefined || declared.anyOf.length === 0
    ? [scopes]
    : declared.anyOf.map((path) => [...new Set([...scopes, ...path])]);
}

/**
 * Every scope the app uses: the configured `scopesSupported` and every `@RequireScopes()` of a
 * controller or provider (routes, resolvers, gateways, MCP tools), so the sign-in can ask for any.
 */
function scopesInUse(classes: readonly Class[], scanner: MetadataScanner, options: KeycardOptions): Set<string> {
  const scopes = new Set(options.scopesSupported);
  for (const type of classes) {
    const prototype = type.prototype as Record<string, unknown>;
    for (const methodName of scanner.getAllMethodNames(prototype)) {
      const handler = prototype[methodName];
      if (typeof handler !== 'function') continue;
      const declared = requirementOf(handler, type);
      for (const scope of [...(declared.scopes ?? []), ...(declared.anyOf ?? []).flat()]) scopes.add(scope);
    }
  }
  return scopes;
}

/** The OAuth 2.0 scheme from the zone's metadata, or a bearer scheme when it cannot be had. */
async function securityScheme(
  app: INestApplicationContext,
  options: KeycardOptions,
  scopes: Record<string, string>,
): Promise<SecuritySchemeObject> {
  const description = `Access tokens of the zone ${options.issuer}`;
  let document: Readonly<Record<string, unknown>>;
  try {
    document = (await app.get(ZoneMetadataService).get()).document;
  } catch {
    options.logger.warn('OpenAPI: zone metadata unavailable; the document describes a plain bearer scheme');
    return { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description };
  }
  const text = (member: string) => (typeof document[member] === 'string' ? (document[member] as string) : undefined);
  const grants = Array.isArray(document.grant_types_supported) ? (document.grant_types_supported as unknown[]) : undefined;
  const authorizationUrl = text('authorization_endpoint');
  const tokenUrl = text('token_endpoint');
  const flows: NonNullable<SecuritySchemeObject['flows']> = {};
  if (authorizationUrl && tokenUrl && (!grants || grants.includes('authorization_code'))) {
    flows.authorizationCode = { authorizationUrl, tokenUrl, scopes };
  }
  if (tokenUrl && (!grants || grants.includes('client_credentials'))) flows.clientCredentials = { tokenUrl, scopes };
  if (Object.keys(flows).length === 0) return { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description };
  return { type: 'oauth2', description, flows };
}
