import type { IncomingMessage } from 'node:http';

/**
 * The auth-scheme of the request's (first) `Authorization` line, lower-cased: `bearer`, `dpop`, …;
 * `undefined` without one. Reads the raw headers, which is where the extractor found the token.
 */
export function authorizationScheme(request: IncomingMessage): string | undefined {
  return credentialsScheme(request.headers.authorization);
}

/** The auth-scheme of one credentials value (`Authorization` header, gRPC `authorization` metadata), lower-cased. */
export function credentialsScheme(value: string | undefined): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return undefined;
  const end = value.indexOf(' ');
  return (end === -1 ? value : value.slice(0, end)).toLowerCase();
}

/** Every `DPoP` header line as received (Node joins repeated unknown headers with `, `). */
export function dpopHeaderValues(request: IncomingMessage): string[] {
  const values: string[] = [];
  const raw = request.rawHeaders ?? [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'dpop') values.push(raw[i + 1]);
  }
  return values;
}
