import type { INestApplicationContext } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { ApiSecurity, type OpenAPIObject, type SecuritySchemeObject } from '@nestjs/swagger';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
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
 *   with its `@RequireScopes()` scopes, read from the guard's own route rules (so `@Public()` and
 *   scopes resolve exactly as the guard resolves them); requirements an app set itself with
 *   `@ApiSecurity()` are kept.
 *
 * The discovery endpoints are never in the document: they are mounted on the HTTP adapter, not
 * declared as Nest routes.
 *
 * @param app the application (after `NestFactory.create`, before or after `listen`).
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
  const scopes = new Set(app.get(RouteRulesRegistry).scopesSupported);
  for (const route of protectedRoutes(app)) {
    const existing = (Reflect.getMetadata(API_SECURITY, route.handler) ?? []) as Record<string, unknown>[];
    if (existing.some((requirement) => name in requirement)) continue; // already described
    ApiSecurity(name, [...route.scopes])(route.prototype, route.methodName, route.descriptor);
  }
  const scheme = await securityScheme(app, moduleOptions, Object.fromEntries([...scopes].map((scope) => [scope, ''])));
  config.components = { ...config.components, securitySchemes: { ...config.components?.securitySchemes, [name]: scheme } };
  return config;
}

interface ProtectedRoute {
  readonly prototype: object;
  readonly methodName: string;
  readonly descriptor: PropertyDescriptor;
  readonly handler: object;
  readonly scopes: readonly string[];
}

/** Every controller route the guard protects, with its required scopes. */
function protectedRoutes(app: INestApplicationContext): ProtectedRoute[] {
  const registry = app.get(RouteRulesRegistry);
  const scanner = app.get(MetadataScanner);
  const routes: ProtectedRoute[] = [];
  for (const wrapper of app.get(DiscoveryService).getControllers()) {
    const type = wrapper.metatype as (new (...args: never[]) => object) | undefined;
    if (!type?.prototype) continue;
    for (const methodName of scanner.getAllMethodNames(type.prototype)) {
      const descriptor = Object.getOwnPropertyDescriptor(type.prototype, methodName);
      const handler = descriptor?.value as object | undefined;
      if (!descriptor || typeof handler !== 'function' || Reflect.getMetadata(PATH_METADATA, handler) === undefined) continue;
      const rules = registry.rulesFor(handler, type);
      if (rules.isPublic) continue;
      routes.push({ prototype: type.prototype, methodName, descriptor, handler, scopes: rules.scopes ?? [] });
    }
  }
  return routes;
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
