import type { FetchLike } from '../interfaces/keycard-module-options.interface.js';
import { USER_AGENT } from '../keycard.constants.js';
import type { ClientAuthenticationParts } from './client-authentication.js';

/** One form POST to an endpoint of the zone, authenticated as this service. */
export interface AuthenticatedPost {
  readonly fetch: FetchLike;
  /** The token or introspection endpoint (also the audience of a `private_key_jwt` assertion). */
  readonly endpoint: string;
  /** The request's own members, without client authentication. */
  readonly form: Readonly<Record<string, string>>;
  /** This service's authentication for this one request (`ClientAuthentication.authenticate(endpoint)`, fresh per request). */
  readonly credentials: ClientAuthenticationParts;
  /** Aborts the request (the caller's absolute deadline). */
  readonly signal: AbortSignal;
  /** More request headers (a DPoP proof). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Sends `post.form` with this service's client authentication (RFC 6749 §2.3, RFC 7523 §2.2: the
 * parts `ClientAuthentication.authenticate()` gave for this request), the way every request of the
 * module to its zone is sent: the secrets travel in the body or `Authorization` only, no redirect
 * is followed (it would re-send them elsewhere: catalogue I22, X32).
 * @returns the response, unread. @throws what `fetch` throws.
 */
export function postAuthenticated(post: AuthenticatedPost): Promise<Response> {
  const { credentials } = post;
  const form = new URLSearchParams(post.form as Record<string, string>);
  for (const [name, value] of Object.entries(credentials.form)) form.set(name, value);
  return post.fetch(post.endpoint, {
    method: 'POST',
    redirect: 'manual',
    signal: post.signal,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      'user-agent': USER_AGENT,
      ...credentials.headers,
      ...post.headers,
    },
    body: form.toString(),
  });
}

/** A JSON object answer of a zone endpoint (`application/json` or `+json`), else undefined. */
export function jsonObjectOf(response: Response, text: string): Record<string, unknown> | undefined {
  if (!/[/+]json\b/i.test(response.headers.get('content-type') ?? '')) return undefined;
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
