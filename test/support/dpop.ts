import { expect } from '@jest/globals';
import { createHmac } from 'node:crypto';
import { base64url } from '../../lib/jws-crypto.js';
import type { DpopKey, DpopProofRequest } from '../../lib/dpop/dpop-key.js';
import { InMemoryDpopReplayStore, type DpopReplayStore } from '../../lib/index.js';
import { ERROR_DESCRIPTIONS } from '../../lib/resource-server/keycard.exceptions.js';
import { parseWwwAuthenticate } from '../../lib/www-authenticate.js';
import type { HttpAnswer } from './http.js';
import { R } from './forge.js';

/** The proof algorithms of mode H-1. */
export const ALGS = 'ES256 PS256';

/** `Authorization: DPoP <token>` and a proof for `method` `path` on the public origin `R`. */
export function dpopHeaders(key: DpopKey, token: string, proof: Partial<DpopProofRequest> & { path?: string } = {}): [string, string][] {
  const { path = '/orders', method = 'GET', ...rest } = proof;
  return [['Authorization', `DPoP ${token}`], ['DPoP', key.proof({ method, url: `${R}${path}`, accessToken: token, ...rest })]];
}

/** The challenges of an answer, by lower-cased scheme, each challenge's params in order. */
export function challengesOf(res: HttpAnswer): Map<string, ReadonlyMap<string, string>> {
  const value = res.headers['www-authenticate'];
  const parsed = typeof value === 'string' ? parseWwwAuthenticate(value) : undefined;
  expect(parsed).toBeDefined();
  return new Map(parsed!.map((c) => [c.scheme.toLowerCase(), c.params]));
}

const VOCABULARY = new Set<string>(Object.values(ERROR_DESCRIPTIONS));

/** What a DPoP-era refusal must show (catalogue H rows, INV1, INV2, INV7). */
export interface DpopRefusal {
  status?: number;
  /** The error on the DPoP challenge, or none. */
  dpopError?: string;
  /** The error on the Bearer challenge, or none. */
  bearerError?: string;
  /** False when no Bearer challenge may appear (mode `required`). @default true */
  bearer?: boolean;
  description?: string;
  /** Anything that must not appear in the answer or logs (tokens, proofs). */
  secrets?: readonly string[];
  logs?: readonly string[];
  algs?: string;
  prm?: string;
}

/** Asserts status, both challenges (error only on the scheme used, `algs`, `resource_metadata`), the fixed description and no leak. */
export function expectDpopRefusal(res: HttpAnswer, expected: DpopRefusal): void {
  expect({ status: res.status, text: res.text.slice(0, 200) }).toMatchObject({ status: expected.status ?? 401 });
  const challenges = challengesOf(res);
  const dpop = challenges.get('dpop');
  expect(dpop?.get('algs')).toBe(expected.algs ?? ALGS);
  expect(dpop?.get('error')).toBe(expected.dpopError);
  const bearer = challenges.get('bearer');
  if (expected.bearer === false) expect(bearer).toBeUndefined();
  else expect(bearer?.get('error')).toBe(expected.bearerError);
  if (expected.prm !== undefined) {
    expect(dpop?.get('resource_metadata')).toBe(expected.prm);
    if (bearer !== undefined) expect(bearer.get('resource_metadata')).toBe(expected.prm);
  }
  const description = dpop?.get('error_description') ?? bearer?.get('error_description');
  if (expected.dpopError !== undefined || expected.bearerError !== undefined) {
    expect(description).toMatch(/^[\x20\x21\x23-\x5B\x5D-\x7E]+$/);
    expect(VOCABULARY.has(description!)).toBe(true);
    if (expected.description !== undefined) expect(description).toBe(expected.description);
    expect(res.json).toEqual({ error: expected.dpopError ?? expected.bearerError, error_description: description });
  } else {
    expect(description).toBeUndefined();
  }
  for (const secret of expected.secrets ?? []) {
    expect(res.text.includes(secret)).toBe(false);
    expect(JSON.stringify(res.headers).includes(secret)).toBe(false);
    expect((expected.logs ?? []).some((line) => line.includes(secret))).toBe(false);
  }
}

/** A compact JWS with any header, signed with HMAC or not at all: hostile proofs. */
export function forgedProof(header: Record<string, unknown>, claims: Record<string, unknown>, hmacKey?: string): string {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  return `${input}.${hmacKey === undefined ? '' : createHmac('sha256', hmacKey).update(input).digest('base64url')}`;
}

/** A replay store that counts what it holds, around the in-memory one: "nothing stored" is checkable. */
export class CountingReplayStore implements DpopReplayStore {
  readonly inner = new InMemoryDpopReplayStore();
  readonly keys: string[] = [];
  remember(key: string, expiresAtMs: number, nowMs: number): boolean {
    const fresh = this.inner.remember(key, expiresAtMs, nowMs);
    if (fresh) this.keys.push(key);
    return fresh;
  }
}
