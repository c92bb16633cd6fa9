import { expect } from '@jest/globals';
import { ERROR_DESCRIPTIONS } from '../../lib/resource-server/keycard.exceptions.js';
import { parseChallenge, type HttpAnswer } from './http.js';

/**
 * Outcome shorthand of the catalogue (§0). `403:a b` is 403 insufficient_scope with scope "a b";
 * `401∅ scope=a b` / `401 IT scope=a b` is a 401 on a route that requires "a b" (catalogue Q12).
 */
export type Outcome =
  | '200' | '401∅' | '401 IT' | '400 IR' | '503 RA' | `403:${string}`
  | `401∅ scope=${string}` | `401 IT scope=${string}`;

/** The 401 outcomes of a route requiring `scope` carry it (Q12); other outcomes are unchanged. */
export function onScopedRoute(outcome: Outcome, scope: string | undefined): Outcome {
  if (scope === undefined || (outcome !== '401∅' && outcome !== '401 IT')) return outcome;
  return `${outcome} scope=${scope}`;
}

const VOCABULARY = new Set<string>(Object.values(ERROR_DESCRIPTIONS));
/** RFC 6750 §3 error_description charset (INV2). */
const DESCRIPTION_CHARSET = /^[\x20\x21\x23-\x5B\x5D-\x7E]+$/;

/**
 * Asserts an answer against a catalogue outcome: status, the parsed challenge (every param, no
 * duplicates: INV1), the body, the fixed description vocabulary (INV2), and that none of `secrets`
 * appears in the answer or in the module's logs (INV7). `prm` is `undefined` where no resource can
 * be named (an unparseable `Host` in development mode, M15): the challenge then has no
 * `resource_metadata`.
 */
export function expectOutcome(
  res: HttpAnswer,
  outcome: Outcome,
  prm: string | undefined,
  secrets: readonly string[] = [],
  logs: readonly string[] = [],
): void {
  const challenge = parseChallenge(res.headers['www-authenticate']);
  const body = res.json as { error?: string; error_description?: string } | undefined;
  if (outcome === '200') {
    expect({ status: res.status, text: res.text.slice(0, 300) }).toMatchObject({ status: 200 });
  } else if (outcome === '503 RA') {
    expect(res.status).toBe(503);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(res.text).not.toContain('invalid_token');
    expect(body?.error).toBe('temporarily_unavailable');
  } else {
    const [kind, scopeOn401] = outcome.split(' scope=') as [string, string | undefined];
    const [status, error] = {
      '401∅': [401, undefined],
      '401 IT': [401, 'invalid_token'],
      '400 IR': [400, 'invalid_request'],
    }[kind as '401∅'] ?? [403, 'insufficient_scope'];
    expect({ status: res.status, text: res.text.slice(0, 300) }).toMatchObject({ status });
    expect(challenge?.scheme).toBe('Bearer');
    expect(new Set(challenge!.names).size).toBe(challenge!.names.length);
    expect(challenge!.params.resource_metadata).toBe(prm);
    expect(challenge!.params.error).toBe(error);
    if (error === undefined) {
      expect(challenge!.names).toEqual(scopeOn401 === undefined ? ['resource_metadata'] : ['scope', 'resource_metadata']);
    } else {
      const description = challenge!.params.error_description;
      expect(description).toMatch(DESCRIPTION_CHARSET);
      expect(VOCABULARY.has(description)).toBe(true);
      expect(body).toEqual({ error, error_description: description });
    }
    if (outcome.startsWith('403:')) expect(challenge!.params.scope).toBe(outcome.slice(4));
    else expect(challenge!.params.scope).toBe(scopeOn401);
    expect(res.headers['content-type']).toMatch(/application\/json/);
  }
  for (const secret of secrets) {
    expect(res.text.includes(secret)).toBe(false);
    expect(JSON.stringify(res.headers).includes(secret)).toBe(false);
    expect(logs.some((line) => line.includes(secret))).toBe(false);
  }
}
