import { HttpStatus, Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { AS_WELL_KNOWN, KEYCARD_OPTIONS, PRM_MAX_AGE_SECONDS, PRM_WELL_KNOWN } from '../keycard.constants.js';
import { KeycardException } from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { dpopMetadata } from '../dpop/dpop-metadata.js';
import type { ProtectedResource } from './protected-resource.js';
import { pathOf, rawRequestOf, ResourceResolver } from './resource-resolver.js';
import { RouteRulesRegistry } from './route-rules.registry.js';
import { TrustedZones } from '../zone/trusted-zones.js';

const ALLOWED_METHODS = 'GET, HEAD';

/**
 * Path suffixes of the PRM routes below this depth always answer through this controller (an
 * unknown one gets its JSON 404 with CORS headers), whatever the configured resources.
 */
const MIN_SUFFIX_DEPTH = 4;

/**
 * Routes of the PRM documents: the well-known path, then one route per suffix depth up to the
 * deepest configured resource path (RFC 9728 §3.1). Wildcard syntax differs between Express 5 and
 * Fastify, so suffixes are plain segment parameters, which both adapters read alike; the handler
 * then compares the whole path with each resource's, so the parameters are never trusted.
 */
function prmRoutes(resources: readonly ProtectedResource[]): string[] {
  const depths = resources.map((resource) => resource.path.split('/').length - 1);
  const deepest = Math.max(MIN_SUFFIX_DEPTH, ...depths);
  const routes = [PRM_WELL_KNOWN];
  for (let depth = 1; depth <= deepest; depth += 1) routes.push(`${routes[depth - 1]}/:s${depth}`);
  return routes;
}

/**
 * Serves RFC 9728 protected resource metadata (so clients and the zone learn how to get a token
 * for this API) and mirrors the (first) zone's RFC 8414 metadata;
 * with several zones the document lists every zone serving the resource.
 *
 * The routes are mounted on the HTTP adapter at bootstrap, after Nest's own routes and before its
 * 404 handler, not declared with `@Get()`: a Nest route would move with `setGlobalPrefix()`, URI
 * versioning (`/v1/...`) or a `RouterModule` path, and would disappear under header or media-type
 * versioning with a `defaultVersion`, while every challenge's `resource_metadata` names the origin
 * root (catalogue M9, M12–M14). Being outside Nest's pipeline, no guard, interceptor or pipe ever
 * stands in front of discovery either (G5, M20). Apps without an HTTP server get no routes.
 */
@Injectable()
export class DiscoveryController implements OnModuleInit {
  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly resources: ResourceResolver,
    private readonly zones: TrustedZones,
    private readonly adapterHost: HttpAdapterHost,
    private readonly routeRules: RouteRulesRegistry,
  ) {}

  /** Nest calls this after registering the app's routes and before its 404 handler. */
  onModuleInit(): void {
    const adapter = this.adapterHost.httpAdapter as HttpAdapterHost['httpAdapter'] | null | undefined;
    if (!adapter) return; // an application context or a microservice: nothing to serve
    for (const route of prmRoutes(this.options.resources)) {
      adapter.all(route, (request: object, response: object) =>
        this.answer(response, () => this.protectedResourceMetadata(request, response)),
      );
    }
    adapter.get(AS_WELL_KNOWN, (_request: object, response: object) =>
      this.answer(response, () => this.authorizationServerMetadata(response)),
    );
  }

  /**
   * Runs a handler outside Nest's exception layer: anything it did not foresee is a generic 500
   * with the error's name in the log, never a stack or a message sent to the client.
   */
  private answer(response: object, handler: () => void | Promise<void>): void {
    const fail = (error: unknown) => {
      this.options.logger.error(`Discovery failed: ${(error as Error)?.name ?? typeof error}`);
      try {
        this.replyError(response, HttpStatus.INTERNAL_SERVER_ERROR, 'server_error', 'The resource server failed');
      } catch {
        // The response was already (partly) sent; nothing more can be said to this client.
      }
    };
    try {
      void Promise.resolve(handler()).catch(fail);
    } catch (error) {
      fail(error);
    }
  }

  /**
   * `GET`/`HEAD` the document, `OPTIONS` for CORS, 405 otherwise (G1–G7); 400 or 500 as
   * {@link ResourceResolver.forMetadataPath} decides when no resource is configured (M15, M16).
   */
  protectedResourceMetadata(request: object, response: object): void {
    const raw = rawRequestOf(request);
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Access-Control-Allow-Origin', '*');
    if (raw.method === 'OPTIONS') {
      adapter.setHeader(response, 'Access-Control-Allow-Methods', ALLOWED_METHODS);
      adapter.setHeader(response, 'Access-Control-Allow-Headers', 'Authorization');
      adapter.setHeader(response, 'Access-Control-Max-Age', '86400');
      adapter.reply(response, undefined, HttpStatus.NO_CONTENT);
      return;
    }
    if (raw.method !== 'GET' && raw.method !== 'HEAD') {
      adapter.setHeader(response, 'Allow', ALLOWED_METHODS);
      this.replyError(response, HttpStatus.METHOD_NOT_ALLOWED, 'method_not_allowed', 'Use GET');
      return;
    }
    let resource: ProtectedResource | undefined;
    try {
      resource = this.resources.forMetadataPath(raw, pathOf(raw));
    } catch (error) {
      if (!(error instanceof KeycardException)) throw error;
      // 400 for an unusable Host, 500 when no resource is configured: the exception's own body.
      adapter.setHeader(response, 'Content-Type', 'application/json');
      adapter.reply(response, error.getResponse(), error.getStatus());
      return;
    }
    if (!resource) {
      this.replyError(response, HttpStatus.NOT_FOUND, 'not_found', 'No such protected resource');
      return;
    }
    adapter.setHeader(response, 'Cache-Control', `public, max-age=${PRM_MAX_AGE_SECONDS}`);
    adapter.setHeader(response, 'Content-Type', 'application/json');
    adapter.reply(response, this.documentFor(resource), HttpStatus.OK);
  }

  /** The zone's RFC 8414 document, verbatim; 503 + `Retry-After` while the zone is unreachable. */
  async authorizationServerMetadata(response: object): Promise<void> {
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Access-Control-Allow-Origin', '*');
    try {
      // With several zones, the first one's: clients find every zone in the PRM document.
      const metadata = await this.zones.all[0].metadata.get();
      adapter.setHeader(response, 'Cache-Control', `public, max-age=${PRM_MAX_AGE_SECONDS}`);
      adapter.setHeader(response, 'Content-Type', 'application/json');
      adapter.reply(response, metadata.document, HttpStatus.OK);
    } catch (error) {
      if (!(error instanceof KeycardException)) throw error;
      for (const [name, value] of Object.entries(error.headers(undefined, undefined))) {
        adapter.setHeader(response, name, value);
      }
      adapter.reply(response, error.getResponse(), error.getStatus());
    }
  }

  /** RFC 9728 §2; members with zero values are omitted (§3.2). */
  private documentFor(resource: ProtectedResource): Record<string, unknown> {
    const document: Record<string, unknown> = {
      resource: resource.id,
      // Every zone that issues tokens for this resource (catalogue S5).
      authorization_servers: this.zones.all.filter((zone) => zone.serves(resource.id)).map((zone) => zone.issuer),
      bearer_methods_supported: ['header'],
    };
    // The scopes some route effectively requires (nearest declaration, catalogue Q13), plus the configured ones.
    const scopes = this.routeRules.scopesSupported;
    if (scopes.length > 0) document.scopes_supported = scopes;
    if (this.options.resourceName) document.resource_name = this.options.resourceName;
    if (this.options.resourceDocumentation) document.resource_documentation = this.options.resourceDocumentation;
    Object.assign(document, dpopMetadata(this.options.dpop));
    return document;
  }

  private replyError(response: object, status: number, error: string, description: string): void {
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Content-Type', 'application/json');
    adapter.reply(response, { error, error_description: description }, status);
  }
}
