import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import { InvalidRequestException, ResourceNotConfiguredException } from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { isLoopbackHost } from '../loopback.js';
import { matchResource, ProtectedResource } from './protected-resource.js';

/** `Host` as RFC 9110 allows it: a name or address and an optional port, nothing else (A31). */
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Derived resources are kept per host so that repeated requests reuse one parsed object. */
const MAX_DERIVED = 64;

/**
 * Tells which resource a request is for. Configured resources come from options only; `Host` and
 * `X-Forwarded-*` are never trusted (A32, G9), except to derive a resource in local development
 * when none is configured and the request came to a loopback host.
 */
@Injectable()
export class ResourceResolver {
  private readonly derived = new Map<string, ProtectedResource>();

  constructor(@Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions) {}

  /** @throws ResourceNotConfiguredException (500) for a non-loopback host without configuration. */
  forRequest(request: IncomingMessage): ProtectedResource {
    const { resources } = this.options;
    if (resources.length === 1) return resources[0];
    if (resources.length > 1) return matchResource(resources, pathOf(request));
    return this.derive(request);
  }

  /** The resource whose metadata document is served at `path`, if any. */
  forMetadataPath(request: IncomingMessage, path: string): ProtectedResource | undefined {
    const candidates = this.options.resources.length > 0 ? this.options.resources : [this.derive(request)];
    return candidates.find((resource) => resource.metadataPath === path.replace(/\/+$/, ''));
  }

  private derive(request: IncomingMessage): ProtectedResource {
    const host = request.headers.host ?? '';
    if (!HOST.test(host)) throw new InvalidRequestException('request_malformed');
    const hostname = host.replace(/:\d+$/, '');
    if (!isLoopbackHost(hostname)) {
      this.options.logger.error(
        `No 'resource' is configured and the request came to non-loopback host ${host}; configure KeycardModule 'resource'`,
      );
      throw new ResourceNotConfiguredException();
    }
    const scheme = (request.socket as TLSSocket | undefined)?.encrypted ? 'https' : 'http';
    const origin = `${scheme}://${host.toLowerCase()}`;
    let resource = this.derived.get(origin);
    if (!resource) {
      if (this.derived.size >= MAX_DERIVED) this.derived.clear();
      resource = new ProtectedResource(origin);
      this.derived.set(origin, resource);
    }
    return resource;
  }
}

/** The request path without its query (which may carry secrets and is never logged or matched). */
export function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** The Node request under the adapter's request object (Fastify wraps it in `raw`). */
export function rawRequestOf(request: object): IncomingMessage {
  return ((request as { raw?: IncomingMessage }).raw ?? request) as IncomingMessage;
}
