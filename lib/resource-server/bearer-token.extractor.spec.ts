import { describe, expect, it } from '@jest/globals';
import type { IncomingMessage } from 'node:http';
import { BEARER_ONLY, BEARER_OR_DPOP, extractBearerToken, parseBearerCredentials } from './bearer-token.extractor.js';

const request = (...rawHeaders: string[]) => ({ rawHeaders }) as unknown as IncomingMessage;
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return 'none';
};

describe('extractBearerToken / parseBearerCredentials (one pass, no per-request strings for the scheme)', () => {
  it('the scheme matches in any case, and only the exact word (RFC 9110 §11.1, RFC 6750 §2.1)', () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) expect(parseBearerCredentials([`${scheme} abc.def`])).toBe('abc.def');
    for (const scheme of ['Bearerx', 'Beare', 'Bearer@', 'Bear\u00e9r', 'B\u0065arer\u0000', '`earer', '@EARER', 'Basic']) {
      expect(parseBearerCredentials([`${scheme} abc.def`])).toBeUndefined();
    }
  });

  it('DPoP only where accepted; Bearer not where it is not', () => {
    expect(parseBearerCredentials(['DPoP abc'], BEARER_ONLY)).toBeUndefined();
    expect(parseBearerCredentials(['dpop abc'], BEARER_OR_DPOP)).toBe('abc');
    expect(parseBearerCredentials(['Bearer abc'], { bearer: false, dpop: true })).toBeUndefined();
    expect(parseBearerCredentials(['DPoPx abc'], BEARER_OR_DPOP)).toBeUndefined();
  });

  it('the Authorization header found in any case among the raw headers; two of them refused (A12–A14)', () => {
    expect(extractBearerToken(request('Host', 'a', 'AUTHORIZATION', 'Bearer abc'))).toBe('abc');
    expect(extractBearerToken(request('Host', 'a'))).toBeUndefined();
    expect(code(() => extractBearerToken(request('authorization', 'Bearer abc', 'Authorization', 'Bearer abc')))).toBe('multiple_tokens');
    expect(code(() => extractBearerToken(request('Authorization', 'Basic x', 'authorization', 'Bearer abc')))).toBe('multiple_tokens');
    expect(code(() => extractBearerToken(request('Authorization', 'Bearer\tabc')))).toBe('token_malformed');
    expect(code(() => extractBearerToken(request('Authorization', 'Bearer a b')))).toBe('token_malformed');
  });
});
