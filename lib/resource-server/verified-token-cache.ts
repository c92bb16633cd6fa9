import { Inject, Injectable } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { JwksKeyStore, VerificationKey } from '../zone/jwks-key-store.js';
import type { TokenVerification } from './token-verification.js';
import { expiryMsOf } from './access-token-rules.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';

interface Entry {
  readonly agent: AgentContext;
  readonly resourceId: string;
  readonly key: VerificationKey;
  /** The key store of the zone that issued the token. */
  readonly keys: JwksKeyStore;
  /** `exp` in milliseconds. */
  readonly expiresAtMs: number;
}

/**
 * Tokens already verified, so a client that sends the same token again costs a map lookup instead
 * of a signature check. An entry is used only for the same resource, only while its `exp` (with the
 * clock tolerance) has not passed, and only while the key that verified it is still the zone's
 * current key for its `kid` in a key set younger than the cache age — a rotation, a withdrawal or a
 * due refresh sends the token through full verification again. Bounded: the oldest entries go first.
 */
@Injectable()
export class VerifiedTokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly toleranceMs: number;

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    this.toleranceMs = options.clockToleranceSeconds * 1000;
  }

  get size(): number {
    return this.entries.size;
  }

  get(token: string, resourceId: string): AgentContext | undefined {
    // With the cache off, not even a look-up: it would hash the whole token text for nothing.
    if (this.entries.size === 0) return undefined;
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    if (entry.resourceId !== resourceId) return undefined;
    const now = this.clock.now();
    if (entry.expiresAtMs + this.toleranceMs < now || !entry.keys.isCurrent(entry.key, now)) {
      this.entries.delete(token);
      return undefined;
    }
    return entry.agent;
  }

  /** Remembers `agent`, verified from `verification.token` for its resource with its zone's key. */
  set(verification: TokenVerification, agent: AgentContext): void {
    const max = this.options.verifiedTokenCacheSize;
    const { key } = verification;
    const keys = verification.zone?.keys;
    if (max <= 0 || key === undefined || keys === undefined) return;
    if (this.entries.size >= max) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(verification.token, { agent, resourceId: verification.resource.id, key, keys, expiresAtMs: expiryMsOf(agent) });
  }
}
