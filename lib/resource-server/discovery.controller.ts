import { All, Controller, Get, HttpStatus, Inject, Req, Res } from '@nestjs/common';
import { DiscoveryService, HttpAdapterHost, MetadataScanner } from '@nestjs/core';
import { KEYCARD_OPTIONS, KEYCARD_SCOPES, PRM_MAX_AGE_SECONDS } from '../keycard.constants.js';
import { KeycardException } from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { ProtectedResource } from './protected-resource.js';
import { Public } from '../decorators/public.decorator.js';
import { pathOf, rawRequestOf, ResourceResolver } from './resource-resolver.js';
import { ZoneMetadataService } from '../zone/zone-metadata.service.js';

const ALLOWED_METHODS = 'GET, HEAD';

/**
 * The PRM document of a resource with a path lives under the well-known path plus that path
 * (RFC 9728 §3.1). Wildcard syntax differs between Express 5 and Fastify, so the suffix is matched
 * with plain segment parameters, which both adapters read alike: resource paths of up to four
 * segments are served.
 */
const PRM_ROUTES = ['', '/:s1', '/:s1/:s2', '/:s1/:s2/:s3', '/:s1/:s2/:s3/:s4'].map(
  (suffix) => `.well-known/oauth-protected-resource${suffix}`,
);

/**
 * Serves RFC 9728 protected resource metadata (so clients and the zone learn how to get a token
 * for this API) and mirrors the zone's RFC 8414 metadata. Never behind the guard: discovery must
 * work without, or with a broken, token (G5).
 */
@Public()
@Controller()
export class DiscoveryController {
  private scopesInUse?: readonly string[];

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly resources: ResourceResolver,
    private readonly zone: ZoneMetadataService,
    private readonly adapterHost: HttpAdapterHost,
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
  ) {}

  @All(PRM_ROUTES)
  protectedResourceMetadata(@Req() request: object, @Res() response: object): void {
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
      this.replyError(response, error.getStatus(), 'server_error', 'The resource is not configured');
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

  @Get('.well-known/oauth-authorization-server')
  async authorizationServerMetadata(@Res() response: object): Promise<void> {
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Access-Control-Allow-Origin', '*');
    try {
      const metadata = await this.zone.get();
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
      authorization_servers: [this.options.issuer],
      bearer_methods_supported: ['header'],
    };
    const scopes = this.scopesSupported();
    if (scopes.length > 0) document.scopes_supported = scopes;
    if (this.options.resourceName) document.resource_name = this.options.resourceName;
    if (this.options.resourceDocumentation) document.resource_documentation = this.options.resourceDocumentation;
    return document;
  }

  /** The scopes named by `@RequireScopes()` anywhere in the app, plus the configured ones. */
  private scopesSupported(): readonly string[] {
    if (this.scopesInUse) return this.scopesInUse;
    const scopes = new Set(this.options.scopesSupported);
    for (const wrapper of this.discovery.getControllers()) {
      const type = wrapper.metatype as (new (...args: never[]) => unknown) | undefined;
      if (!type?.prototype) continue;
      const onClass = Reflect.getMetadata(KEYCARD_SCOPES, type) as readonly string[] | undefined;
      onClass?.forEach((scope) => scopes.add(scope));
      for (const name of this.scanner.getAllMethodNames(type.prototype)) {
        const method = (type.prototype as Record<string, unknown>)[name];
        const onMethod = Reflect.getMetadata(KEYCARD_SCOPES, method as object) as readonly string[] | undefined;
        onMethod?.forEach((scope) => scopes.add(scope));
      }
    }
    this.scopesInUse = Object.freeze([...scopes]);
    return this.scopesInUse;
  }

  private replyError(response: object, status: number, error: string, description: string): void {
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Content-Type', 'application/json');
    adapter.reply(response, { error, error_description: description }, status);
  }
}
