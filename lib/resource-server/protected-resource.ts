import { PRM_WELL_KNOWN } from '../keycard.constants.js';

/**
 * One identifier this API answers to, with the URLs derived from it once (RFC 9728 §3.1): the
 * metadata document lives at the origin's well-known path with the resource's path appended.
 */
export class ProtectedResource {
  /** The identifier exactly as configured: the `aud` tokens must carry and the PRM `resource`. */
  readonly id: string;
  /** Path part of the identifier without a trailing slash (`''` for an origin). */
  readonly path: string;
  /** Where this API serves the resource's metadata document (path only). */
  readonly metadataPath: string;
  /** Absolute URL of that document, as sent in `resource_metadata` challenges. */
  readonly metadataUrl: string;

  constructor(id: string) {
    const url = new URL(id);
    this.id = id;
    this.path = url.pathname.replace(/\/+$/, '');
    this.metadataPath = PRM_WELL_KNOWN + this.path;
    this.metadataUrl = url.origin + this.metadataPath;
  }

  /** True when a request path lies under this resource's path. */
  covers(requestPath: string): boolean {
    return (
      this.path === '' || requestPath === this.path || requestPath.startsWith(this.path + '/')
    );
  }
}

/**
 * The resource a request is for: the configured one whose path is the longest prefix of the request
 * path, else the first configured one.
 */
export function matchResource(
  resources: readonly ProtectedResource[],
  requestPath: string,
): ProtectedResource {
  let best = resources[0];
  for (const resource of resources) {
    if (resource.covers(requestPath) && resource.path.length > best.path.length) best = resource;
  }
  return best;
}
