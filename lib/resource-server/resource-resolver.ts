import { Inject, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../clock.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import { InvalidRequestException, ResourceNotConfiguredException } from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import { isLoopbackAddress, isLoopbackHost } from '../loopback.js';
import { logSafe } from '../logging/log-safe.js';
import { ONCE_PER_INTERVAL_NOTE, OncePerInterval } from '../logging/once-per-interval.js';
import { parseHostHeader } from './host-header.js';
import { localAddressOf } from './local-address.js';
import { ProtectedResource } from './protected-resource.js';
import { chooseForPath, routerFoldsCase } from './resource-choice.js';

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
  /**
   * A 500 for a missing `resource` is logged once per interval: any client can repeat the request
   * (any `Host`, any path), and a log line per request would let it flood the log (issue 25, F9).
   */
  private readonly unconfiguredLog: OncePerInterval;

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly adapterHost: HttpAdapterHost,
    @Inject(KEYCARD_CLOCK) clock: Clock,
  ) {
    this.unconfiguredLog = new OncePerInterval(clock);
  }

  /**
   * The resource of a request whose route the module could not judge at bootstrap (catalogue Q17):
   * the only configured one, else the longest covering one by the request path.
   * @throws ResourceNotConfiguredException (500) when no configured resource covers the path, or
   *   when no resource is configured and the request may not derive one (see `derive`).
   * @throws InvalidRequestException (400) for a path with dot or empty segments, or an unusable
   *   `Host` in development mode.
   */
  forRequest(request: IncomingMessage): ProtectedResource {
    const { resources } = this.options;
    if (resources.length === 1) return resources[0];
    if (resources.length > 1) return this.forPath(resources, request);
    return this.derive(request);
  }

  /** The longest covering resource among `candidates` for the request's path; 500 when none covers. */
  forPath(candidates: readonly ProtectedResource[], request: IncomingMessage): ProtectedResource {
    const resource = chooseForPath(candidates, request.url ?? '/', routerFoldsCase(this.adapterHost.httpAdapter));
    if (resource !== undefined) return resource;
    this.unconfigured(`No configured 'resource' covers ${logSafe(`${request.method} ${pathOf(request)}`)}; add one to KeycardModule 'resource'`);
  }

  /** The resource whose metadata document is served at `path`, if any. @throws as {@link forRequest}. */
  forMetadataPath(request: IncomingMessage, path: string): ProtectedResource | undefined {
    const candidates = this.options.resources.length > 0 ? this.options.resources : [this.derive(request)];
    return candidates.find((resource) => resource.metadataPath === path.replace(/\/+$/, ''));
  }

  /**
   * Local development (SPEC §4, catalogue Q15): with no `resource` configured, the request's own
   * origin is the resource, but only when the connection reached a loopback address of this
   * machine **and** `Host` names a loopback host with a valid port. `Host` alone proves nothing: a
   * public server receives whatever `Host` a client writes.
   *
   * @throws InvalidRequestException (400) when `Host` is absent, repeated or cannot be parsed (M15).
   * @throws ResourceNotConfiguredException (500) for any other connection or host (M16).
   */
  private derive(request: IncomingMessage): ProtectedResource {
    const host = singleHost(request);
    const parsed = parseHostHeader(host);
    if (parsed === undefined) throw new InvalidRequestException('request_malformed');
    const local = localAddressOf(request);
    if (!isLoopbackAddress(local)) {
      this.notConfigured(`the connection reached ${local ?? 'an unknown address'}, not a loopback address`);
    }
    if (!isLoopbackHost(parsed.hostname)) {
      this.notConfigured(`the request came to non-loopback host ${parsed.hostname}`);
    }
    const scheme = (request.socket as TLSSocket | undefined)?.encrypted ? 'https' : 'http';
    const key = `${scheme}://${host!}`;
    let resource = this.derived.get(key);
    if (!resource) {
      const authority = parsed.port === undefined ? parsed.hostname : `${parsed.hostname}:${parsed.port}`;
      try {
        // URL gives the spelling clients compute (default port dropped, IPv6 compressed).
        resource = new ProtectedResource(new URL(`${scheme}://${authority}`).origin);
      } catch {
        throw new InvalidRequestException('request_malformed'); // e.g. a name IDNA refuses
      }
      if (this.derived.size >= MAX_DERIVED) this.derived.clear();
      this.derived.set(key, resource);
    }
    return resource;
  }

  private notConfigured(why: string): never {
    this.unconfigured(`No 'resource' is configured and ${why}; configure KeycardModule 'resource'`);
  }

  /**
   * Refuses a request no resource covers: logs `message` (already log-safe) once per interval.
   * @throws ResourceNotConfiguredException (500), always.
   */
  unconfigured(message: string): never {
    if (this.unconfiguredLog.due()) this.options.logger.error(`${message} (${ONCE_PER_INTERVAL_NOTE})`);
    throw new ResourceNotConfiguredException();
  }
}

/**
 * The one `Host` of a request (`:authority` under HTTP/2); `undefined` when there are several, which
 * RFC 9112 §3.2 answers with 400 (Node keeps only the first in `headers`).
 */
function singleHost(request: IncomingMessage): string | undefined {
  const host = request.headers.host ?? (request.headers[':authority'] as string | undefined);
  if (host !== undefined && (request.headersDistinct?.host?.length ?? 1) > 1) return undefined;
  return host;
}

/** The request path without its query (which may carry secrets and is never logged or matched). */
export function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * The Node request under the adapter's request object (Fastify wraps it in `raw`). A Node request
 * (Express's, the common case) is told by its class first: Express gives every request a hidden
 * class of its own, so looking for a `raw` it lacks walks its whole prototype chain, each time
 * (~160–300 ns a look in a server, against ~10 for `instanceof`; issue 24).
 */
export function rawRequestOf(request: object): IncomingMessage {
  if (request instanceof IncomingMessage) return request;
  return ((request as { raw?: IncomingMessage }).raw ?? request) as IncomingMessage;
}
