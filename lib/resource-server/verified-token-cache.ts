import { Inject, Injectable } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { JwksKeyStore, VerificationKey } from '../zone/jwks-key-store.js';
import type { TokenVerification } from './token-verification.js';
import { expiryMsOf } from './access-token-rules.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { SeenOnce } from './verified-token-cache.seen-once.js';
import { fingerprintOf } from './token-fingerprint.js';

interface Entry {
  /** The token's whole text: a fingerprint only finds the entry, this proves it is the token's. */
  readonly token: string;
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
 *
 * A token enters the cache the second time it is verified, not the first (see {@link SeenOnce}):
 * Keycard issues a token per agent action, and a token that is never sent again would cost an
 * insertion, an eviction and, in a server, a few KB kept for thousands of requests (the token text
 * and its agent outlive the young generation, so every one of them is copied and promoted by the
 * garbage collector: issue 24 measured that at several times the cost of the insertion itself,
 * which an in-process benchmark walking the same token strings does not see). A token sent twice is
 * likely to be sent again; from its third call on it is a cache hit.
 *
 * Entries are found by the token's {@link fingerprintOf fingerprint} and then compared by their
 * whole text: a map keyed by the text would hash all of it on every look-up, hit or miss, since
 * each request's token is a new string (~1.4 µs for a 900-character token, most of what a cache
 * hit cost). Two verified tokens with the same fingerprint share a slot: the later one replaces
 * the earlier, which then costs a verification again, never an admission without one.
 */
@Injectable()
export class VerifiedTokenCache {
  private readonly entries = new Map<number, Entry>();
  private readonly toleranceMs: number;
  /** Verified tokens not cached yet, as fingerprints; for as many first sights as the cache holds. */
  private readonly seenOnce: SeenOnce;

  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    this.toleranceMs = options.clockToleranceSeconds * 1000;
    this.seenOnce = new SeenOnce(options.verifiedTokenCacheSize);
  }

  get size(): number {
    return this.entries.size;
  }

  get(token: string, resourceId: string): AgentContext | undefined {
    // With the cache off, not even a look-up: it would hash the whole token text for nothing.
    if (this.entries.size === 0) return undefined;
    const fingerprint = fingerprintOf(token);
    const entry = this.entries.get(fingerprint);
    if (entry === undefined || entry.token !== token || entry.resourceId !== resourceId) return undefined;
    const now = this.clock.now();
    if (entry.expiresAtMs + this.toleranceMs < now || !entry.keys.isCurrent(entry.key, now)) {
      this.entries.delete(fingerprint);
      return undefined;
    }
    return entry.agent;
  }

  /**
   * Remembers `agent`, verified from `verification.token` for its resource with its zone's key, if
   * that token was verified once before (recently: among the last verifications the cache could hold,
   * and not pushed out of its full bucket by 8 later ones, see {@link SeenOnce}).
   */
  set(verification: TokenVerification, agent: AgentContext): void {
    const max = this.options.verifiedTokenCacheSize;
    const { key } = verification;
    const keys = verification.zone?.keys;
    if (max <= 0 || key === undefined || keys === undefined) return;
    const { token } = verification;
    const fingerprint = fingerprintOf(token);
    if (this.seenOnce.firstSight(fingerprint)) return;
    // A token already held (verified by two calls at once, or for another resource) takes its own
    // slot again: evicting the oldest for it would push a reused token out for nothing.
    if (this.entries.size >= max && !this.entries.has(fingerprint)) this.entries.delete(this.entries.keys().next().value as number);
    this.entries.set(fingerprint, { token, agent, resourceId: verification.resource.id, key, keys, expiresAtMs: expiryMsOf(agent) });
  }
}
