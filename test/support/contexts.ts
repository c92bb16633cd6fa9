import { expect } from '@jest/globals';
import { ERROR_DESCRIPTIONS } from '../../lib/resource-server/keycard.exceptions.js';

const VOCABULARY = new Set<string>([...Object.values(ERROR_DESCRIPTIONS), 'Authentication is required']);

/** A token the zone never signed: T0's shape with its signature replaced. */
export function forged(token: string): string {
  const [header, payload] = token.split('.');
  return `${header}.${payload}.${Buffer.alloc(256, 7).toString('base64url')}`;
}

/**
 * N10: what a client of a non-HTTP context receives carries no stack frame, no library message
 * and none of `secrets`; the module's logs carry none of `secrets` either (INV7).
 */
export function expectNoLeak(received: unknown, secrets: readonly string[], logs: readonly string[]): void {
  const text = typeof received === 'string' ? received : JSON.stringify(received);
  expect(text).not.toMatch(/\bat \S+ \(|\.ts:\d+|\.js:\d+|node_modules|TypeError|Cannot read/);
  for (const secret of secrets) {
    expect(text.includes(secret)).toBe(false);
    expect(logs.some((line) => line.includes(secret))).toBe(false);
  }
}

/** The description of a refusal comes from the fixed vocabulary (INV2). */
export function expectFixedDescription(description: unknown): void {
  expect(VOCABULARY.has(description as string)).toBe(true);
}

/**
 * Tokens a suite issues from its zone (client `agent-t` unless the claims say otherwise),
 * remembered so a suite can check that no answer or log line carries their signatures (INV7).
 */
export function issuedTokens(zone: () => { issueToken(claims: Record<string, unknown>): string }) {
  const issued: string[] = [];
  return {
    token(claims: Record<string, unknown>): string {
      const t = zone().issueToken({ client_id: 'agent-t', ...claims });
      issued.push(t);
      return t;
    },
    signatures: (): string[] => issued.map((t) => t.split('.')[2]!),
  };
}
