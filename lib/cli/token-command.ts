import { DEV_TOKEN_MAX_EXPIRES_IN } from '../testing/test-zone.js';

/** What the `token` command asks the local zone for. */
export interface TokenRequest {
  /** The local zone's URL (`KEYCARD_ZONE_URL`). */
  zoneUrl: string;
  /** The agent (`client_id`). @default 'agent-a' */
  agent?: string;
  /** The user (`sub`); without one the agent acts as itself. */
  user?: string;
  scopes?: string[];
  /** The `aud`: the app's `resource`. */
  resource?: string;
  /** Lifetime in seconds, at most a day. @default 3600 */
  expiresIn?: number;
}

/**
 * Asks the local zone (`nestjs-keycard zone`) for an access token through its `POST /dev/token`.
 * @returns the token.
 * @throws Error for an `expiresIn` outside 1…86400, or saying whether the zone is not running or
 *   refused the request (with the zone's `error_description` when it gives one).
 */
export async function mintToken(request: TokenRequest): Promise<string> {
  const { expiresIn } = request;
  if (expiresIn !== undefined && !(Number.isInteger(expiresIn) && expiresIn >= 1 && expiresIn <= DEV_TOKEN_MAX_EXPIRES_IN)) {
    throw new Error(`--expires-in must be a whole number of seconds from 1 to ${DEV_TOKEN_MAX_EXPIRES_IN} (a day)`);
  }
  const url = new URL('/dev/token', request.zoneUrl);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: request.agent ?? 'agent-a', user: request.user, scopes: request.scopes, audience: request.resource, expiresIn: request.expiresIn }),
      signal: AbortSignal.timeout(5_000),
    });
  } catch {
    throw new Error(`no local zone answers at ${request.zoneUrl}: start one with \`npx nestjs-keycard zone\``);
  }
  const body = (await response.json().catch(() => undefined)) as { access_token?: unknown; error?: unknown; error_description?: unknown } | undefined;
  if (response.status === 404) throw new Error(`${request.zoneUrl} is not a local zone started by \`nestjs-keycard zone\` (no /dev/token)`);
  if (response.status !== 200 || typeof body?.access_token !== 'string') {
    const why = [body?.error, body?.error_description].filter((part) => typeof part === 'string').join(': ');
    throw new Error(`the local zone refused the request: HTTP ${response.status} ${why}`.trim());
  }
  return body.access_token;
}
