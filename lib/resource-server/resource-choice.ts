import type { HttpServer } from '@nestjs/common';
import { InvalidRequestException } from './keycard.exceptions.js';
import { decodeSegment, type ProtectedResource } from './protected-resource.js';

/**
 * Which configured resource judges a route (catalogue Q17): the one whose path is the longest
 * prefix, on segment boundaries, of the path the router matched; list order never matters.
 *
 * - a `ProtectedResource`: always this one (decided from the route pattern alone, so no spelling of
 *   the request path can change it: M7);
 * - `null`: no resource covers the route (M8: 500 resource not configured);
 * - an array: a parameter of the pattern sits where a resource path is compared, so the request's
 *   own path decides among these candidates.
 */
export type ResourceChoice = ProtectedResource | null | readonly ProtectedResource[];

/** A pattern segment without parameter, wildcard or group syntax of either router. */
const STATIC_SEGMENT = /^[^:*{}()?+[\]\\!]*$/;

/** Segments of a path or pattern, without the empty ones its leading and trailing slash make. */
function segmentsOf(path: string): string[] {
  return path.split('/').filter((segment, i, all) => segment !== '' || (i > 0 && i < all.length - 1));
}

function sameSegment(a: string, b: string, foldCase: boolean): boolean {
  return a === b || (foldCase && a.toLowerCase() === b.toLowerCase());
}

/**
 * How a route pattern (as Nest registers it: global prefix, version, module, controller and method
 * path) relates to a resource: under it for every request, outside it for every request, or
 * depending on a parameter's value.
 */
function coverage(resource: ProtectedResource, pattern: readonly string[], foldCase: boolean): 'covers' | 'outside' | 'maybe' {
  for (let i = 0; i < resource.segments.length; i++) {
    const segment = pattern[i];
    if (segment === undefined) return 'outside';
    if (!STATIC_SEGMENT.test(segment)) return 'maybe';
    if (!sameSegment(segment, resource.segments[i], foldCase)) return 'outside';
  }
  return 'covers';
}

/**
 * The resource of a route pattern, decided once at bootstrap.
 * @param foldCase true when the router matches static path parts case-insensitively (Express's default).
 */
export function chooseForPattern(
  resources: readonly ProtectedResource[],
  pattern: string,
  foldCase: boolean,
): ResourceChoice {
  const segments = segmentsOf(pattern);
  let best: ProtectedResource | undefined;
  const maybe: ProtectedResource[] = [];
  for (const resource of resources) {
    const relation = coverage(resource, segments, foldCase);
    if (relation === 'covers' && (best === undefined || resource.segments.length > best.segments.length)) best = resource;
    else if (relation === 'maybe') maybe.push(resource);
  }
  const deeper = maybe.filter((resource) => best === undefined || resource.segments.length > best.segments.length);
  if (deeper.length === 0) return best ?? null;
  return best === undefined ? deeper : [best, ...deeper];
}

/**
 * The resource of one request among `candidates`, from its path as the router saw it: without query
 * or fragment, percent-decoded per segment, case-folded where the router folds. Dot segments, empty
 * segments and encoded `/` or `\` are refused, because routers and proxies disagree on whether they
 * collapse or split them (M7).
 *
 * @returns the covering candidate with the longest path, or undefined when none covers it.
 * @throws InvalidRequestException (400) for a path with `.`, `..` or empty segments, or `%2F` / `%5C`.
 */
export function chooseForPath(
  candidates: readonly ProtectedResource[],
  url: string,
  foldCase: boolean,
): ProtectedResource | undefined {
  const end = url.search(/[?#]/);
  const segments = (end === -1 ? url : url.slice(0, end)).split('/').slice(1);
  if (segments.at(-1) === '') segments.pop(); // the root, or one trailing slash
  // An encoded `/` or `\` is a separator to some proxies and routers and data to others (M7).
  if (segments.some((s) => s === '' || s === '.' || s === '..' || /^(?:%2e|\.){1,2}$/i.test(s) || /%2f|%5c/i.test(s))) {
    throw new InvalidRequestException('request_malformed');
  }
  let best: ProtectedResource | undefined;
  for (const resource of candidates) {
    const covers = resource.segments.every(
      (segment, i) => i < segments.length && sameSegment(decodeSegment(segments[i]), segment, foldCase),
    );
    if (covers && (best === undefined || resource.segments.length > best.segments.length)) best = resource;
  }
  return best;
}

/**
 * Whether the app's router matches static path parts case-insensitively. Read from the adapter
 * where it says (NestJS 12); otherwise Express's default (insensitive) and Fastify's (sensitive).
 */
export function routerFoldsCase(adapter: HttpServer | undefined): boolean {
  const options = (adapter as { getRouteMatchingOptions?: () => { caseSensitive?: boolean } } | undefined)
    ?.getRouteMatchingOptions?.();
  if (options?.caseSensitive !== undefined) return !options.caseSensitive;
  return adapter?.getType?.() !== 'fastify';
}
