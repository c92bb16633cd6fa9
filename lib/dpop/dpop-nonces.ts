import { TokenCipher } from '../redis/token-cipher.js';

/** Associated data binding a sealed nonce to its use, so no other sealed value of the key ring opens as one. */
const PURPOSE = 'keycard-dpop-nonce';

/** What a proof's `nonce` is worth now. */
export type NonceState = 'current' | 'aging' | 'invalid';

/**
 * Server nonces (RFC 9449 §9) that need no shared state (catalogue Q38, MCP DPoP profile §Stateless
 * Operation): a nonce is the issue time, sealed with AES-256-GCM under a key ring every instance
 * holds, so any instance accepts any instance's nonce until its lifetime ends. A nonce past half its
 * lifetime is still accepted, and the answer offers a new one (§8.2).
 */
export class DpopNonces {
  private readonly cipher: TokenCipher;
  private readonly lifetimeMs: number;

  constructor(options: { keys: ConstructorParameters<typeof TokenCipher>[0]; lifetimeSeconds: number }) {
    this.cipher = new TokenCipher(options.keys);
    this.lifetimeMs = options.lifetimeSeconds * 1000;
  }

  /** A new nonce, issued at `nowMs`. */
  issue(nowMs: number): string {
    return this.cipher.seal(String(nowMs), PURPOSE);
  }

  /** `current`, `aging` (past half its lifetime: offer a new one) or `invalid` (absent, foreign, altered or expired). */
  judge(nonce: unknown, nowMs: number): NonceState {
    if (typeof nonce !== 'string' || nonce.length > 200) return 'invalid';
    const opened = this.cipher.open(nonce, PURPOSE);
    const issuedAt = opened === undefined ? NaN : Number(opened);
    // A nonce from the future (clock skew between instances) of more than a second is not ours to trust.
    if (!Number.isFinite(issuedAt) || issuedAt > nowMs + 1000 || nowMs - issuedAt > this.lifetimeMs) return 'invalid';
    return nowMs - issuedAt > this.lifetimeMs / 2 ? 'aging' : 'current';
  }
}
