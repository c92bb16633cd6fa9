import { describe, expect, it } from '@jest/globals';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { TokenVerification } from './token-verification.js';
import { VerifiedTokenCache } from './verified-token-cache.js';

const keys = { isCurrent: () => true };
const agent = { expiresAt: new Date(Date.now() + 60_000) } as unknown as AgentContext;
const verified = (token: string, resource = 'https://api.example.com') =>
  ({ token, key: {}, zone: { keys }, resource: { id: resource } }) as unknown as TokenVerification;

describe('VerifiedTokenCache (trial 24)', () => {
  it('storing a token it already holds (two calls verified it at once, or a second resource) pushes no other token out of a full cache', () => {
    const cache = new VerifiedTokenCache({ verifiedTokenCacheSize: 2, clockToleranceSeconds: 0 } as KeycardOptions, { now: () => Date.now() });
    const twice = (token: string) => [0, 1].forEach(() => cache.set(verified(token), agent));
    twice('a.b.first00000000');
    twice('a.b.second0000000');
    expect(cache.size).toBe(2);
    twice('a.b.second0000000'); // verified twice more while its first verification was still running
    expect(cache.get('a.b.first00000000', 'https://api.example.com')).toBe(agent);
    expect(cache.get('a.b.second0000000', 'https://api.example.com')).toBe(agent);
  });

  it('a token whose fingerprint matches a cached one is not that token: no hit, and once verified twice it takes the slot', () => {
    const cache = new VerifiedTokenCache({ verifiedTokenCacheSize: 10, clockToleranceSeconds: 0 } as KeycardOptions, { now: () => Date.now() });
    const cached = 'h.cached.sameEnd12345678Q';
    const other = 'h.forged.sameEnd12345678Q'; // the same last characters: the same fingerprint
    [0, 1].forEach(() => cache.set(verified(cached), agent));
    expect(cache.get(cached, 'https://api.example.com')).toBe(agent);
    expect(cache.get(other, 'https://api.example.com')).toBeUndefined();
    const otherAgent = { ...agent } as AgentContext;
    [0, 1].forEach(() => cache.set(verified(other), otherAgent));
    expect(cache.get(other, 'https://api.example.com')).toBe(otherAgent);
    expect(cache.get(cached, 'https://api.example.com')).toBeUndefined();
    expect(cache.size).toBe(1);
  });
});
