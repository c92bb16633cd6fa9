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
  /** The path's segments, percent-decoded, for matching against routes (catalogue Q17). */
  readonly segments: readonly string[];
  /** Where this API serves the resource's metadata document (path only). */
  readonly metadataPath: string;
  /** Absolute URL of that document, as sent in `resource_metadata` challenges. */
  readonly metadataUrl: string;

  constructor(id: string) {
    const url = new URL(id);
    this.id = id;
    this.path = url.pathname.replace(/\/+$/, '');
    this.segments = Object.freeze(this.path.split('/').slice(1).map(decodeSegment));
    this.metadataPath = PRM_WELL_KNOWN + this.path;
    this.metadataUrl = url.origin + this.metadataPath;
  }
}

/** A percent-decoded path segment; a segment that does not decode stays as written. */
export function decodeSegment(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
