import { createHmac, randomUUID } from 'node:crypto';
import { base64url, signJws, type TestZone } from '../../lib/testing/index.js';

export const R = 'https://api.example.com';
export const PRM = `${R}/.well-known/oauth-protected-resource`;

/** Claims of the catalogue's baseline token T0 for this zone. */
export function baseClaims(zone: TestZone, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: zone.issuer, aud: R, sub: 'user-1', client_id: 'cli-1', iat: now, exp: now + 300,
    jti: randomUUID(), scope: 'orders:read', ...overrides,
  };
}

export const T0_HEADER = { alg: 'RS256', typ: 'at+jwt', kid: 'rs1' };

/** Encodes header and payload without signing (strings are used verbatim). */
export function unsigned(header: unknown, payload: unknown): string {
  const enc = (part: unknown) => base64url(typeof part === 'string' ? part : JSON.stringify(part));
  return `${enc(header)}.${enc(payload)}`;
}

/** An HS* token keyed with `secret`: what key-confusion and weak-secret attacks send. */
export function hmacToken(header: Record<string, unknown>, payload: unknown, secret: string | Buffer): string {
  const input = unsigned(header, payload);
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** Signs with one of the zone's keys under any header. */
export function zoneSigned(zone: TestZone, header: Record<string, unknown> | string, payload: Record<string, unknown> | string, kid = 'rs1', alg?: string): string {
  const algorithm = alg ?? (typeof header === 'string' ? 'RS256' : (header.alg as string));
  return signJws(header, payload, zone.key(kid).privateKey, algorithm);
}

export const bearer = (token: string): [string, string][] => [['Authorization', `Bearer ${token}`]];

/** An RFC 8693 `act` claim of `links` nested actors, outermost `agent-<links>` (`undefined` for 0). */
export function actChain(links: number): Record<string, unknown> | undefined {
  return links === 0 ? undefined : { sub: `agent-${links}`, act: actChain(links - 1) };
}
