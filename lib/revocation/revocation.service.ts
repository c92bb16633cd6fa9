import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { Clock } from '../clock.js';
import { CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import { DecisionEvents } from '../decision/decision-events.js';
import { TokenValidators } from '../decision/token-validator.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { InvalidTokenException } from '../resource-server/keycard.exceptions.js';
import { entryOf, keyedOn, refuses, type Revocation, type RevocationEntry, type RevocationProvenance, type RevocationTarget } from './revocation.js';
import { revocationMatchOf, revokedBy } from '../decision/decision-event-kinds.js';
import type { ClaimOutcome, RevocationChange, RevocationFeedSink } from './revocation-feed.js';
import { RevocationList } from './revocation-list.js';
import { KEYCARD_REVOCATION_OPTIONS, type RevocationOptions } from './revocation-options.js';
import { RevocationValidator } from './revocation-validator.js';
import { SeenIds } from './seen-ids.js';

/** How long {@link RevocationService.revoke} waits for the feed before it queues the change for later. */
const SHARE_TIMEOUT_MS = 1000;
/** How often expired entries are dropped. */
const SWEEP_INTERVAL_MS = 60_000;

/**
 * The revocation list's state, for health indicators and tests.
 * @publicApi
 */
export interface RevocationStatus {
  /** `degraded` while some source cannot vouch that the list is current (see `reasons`). */
  readonly status: 'up' | 'degraded';
  /** Why it is degraded: `store_unavailable`, `ssf_stream_paused`, `ssf_poll_stale`. */
  readonly reasons: readonly string[];
  /** Entries held in memory. */
  readonly entries: number;
  /** When the SSF stream last answered a verification event. */
  readonly lastVerifiedAt?: Date;
}

/** Who is told when an entry is applied (audit, the app's own observers). */
export type RevocationListener = (entry: RevocationEntry, origin: 'local' | 'shared') => void;

/**
 * Revokes before `exp` (catalogue §X): an app's admin route or job calls {@link revoke} /
 * {@link restore}; the SSF receiver calls them for the zone's signals. A revocation applies on
 * this instance at once, ends the matching open carriers (WebSocket, socket.io, graphql-ws,
 * subscriptions, gRPC streams, SSE, MCP streams) with their refusal, and reaches the other
 * instances through the feed. The module mounts no admin route of its own.
 *
 * @example
 * ```ts
 * @Post('admin/sessions/:sid/revoke')
 * async revoke(@Param('sid') sid: string) {
 *   await this.revocations.revoke({ issuer: 'https://zone.keycard.cloud', sessionId: sid });
 * }
 * ```
 * @publicApi
 */
@Injectable()
export class RevocationService implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  /** @internal The in-memory list the validator reads. */
  readonly list = new RevocationList();
  private readonly reasons = new Set<string>();
  private readonly listeners: RevocationListener[] = [];
  /** Changes taken while the feed was unreachable, shared once it is back. */
  private pending: RevocationChange[] = [];
  private readonly seen = new SeenIds();
  private sweeper?: NodeJS.Timeout;
  private verifiedAt?: Date;

  constructor(
    @Inject(KEYCARD_REVOCATION_OPTIONS) private readonly options: RevocationOptions,
    @Inject(KEYCARD_OPTIONS) private readonly keycard: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
    private readonly lifecycle: CarrierLifecycle,
    private readonly validators: TokenValidators,
    private readonly events: DecisionEvents,
  ) {}

  onModuleInit(): void {
    this.validators.useFirst(new RevocationValidator(this));
  }

  async onApplicationBootstrap(): Promise<void> {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    const { feed } = this.options;
    if (feed === undefined) return;
    const sink: RevocationFeedSink = { changed: (change) => this.take(change, 'shared'), available: (up) => this.feedAvailable(up) };
    await feed.connect(sink);
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.sweeper);
    await this.options.feed?.close();
  }

  /**
   * Refuses the tokens `revocation` names, here at once and on every instance through the feed,
   * until `maxTokenLifetimeSeconds` + clock tolerance from now; ends their open carriers.
   * Resolves once shared, or once queued to be shared when the feed is back (logged; never hangs).
   * @param source recorded with the entry and in the audit line. @default 'service'
   * @throws TypeError for an invalid target.
   */
  async revoke(revocation: Revocation, source = 'service'): Promise<RevocationEntry> {
    return this.revokeFrom(revocation, { source });
  }

  /**
   * {@link revoke} for a Shared Signals event: the entry records the SET's `jti` and `txn` as its
   * own fields, for the `revocation_applied` event and the audit of each refusal (catalogue W4).
   * @internal The SSF receiver's.
   */
  revokeFromSet(revocation: Revocation, set: { readonly jti: string; readonly txn?: string }): Promise<RevocationEntry> {
    return this.revokeFrom(revocation, { source: 'ssf', setId: set.jti, txn: set.txn });
  }

  private async revokeFrom(revocation: Revocation, from: RevocationProvenance): Promise<RevocationEntry> {
    const entry = entryOf(revocation, { nowMs: this.clock.now(), lifetimeMs: this.entryLifetimeMs, from });
    const change: RevocationChange = { op: 'revoke', entry: this.take({ op: 'revoke', entry }, 'local')! };
    await this.share(change);
    return change.entry as RevocationEntry;
  }

  /** Lifts the entry of `target`, here and on every instance (tokens it matched are served again). @throws TypeError for an invalid target. */
  async restore(target: RevocationTarget): Promise<void> {
    const { kind, value, subject } = keyedOn(target);
    const change: RevocationChange = { op: 'restore', entry: { kind, issuer: target.issuer, value, subject } };
    this.take(change, 'local');
    await this.share(change);
  }

  /** True when `agent`'s token is refused by the list now. */
  isRevoked(agent: AgentContext): boolean {
    return this.list.find(agent, this.clock.now()) !== undefined;
  }

  /**
   * Judges a verified token against the list (the validator's slow path).
   * @throws InvalidTokenException `revoked` when an entry matches; `claim_invalid` when the token
   *   claims a lifetime longer than `maxTokenLifetimeSeconds` (an entry could expire before it).
   */
  check(agent: AgentContext): void {
    if (agent.expiresAt.getTime() - agent.issuedAt.getTime() > this.options.maxTokenLifetimeMs) throw new InvalidTokenException('claim_invalid');
    const entry = this.list.find(agent, this.clock.now());
    if (entry !== undefined) throw revokedBy(entry);
  }

  /** Calls `listener` with every entry applied from now on. @returns unsubscribes it. */
  onApplied(listener: RevocationListener): () => void {
    this.listeners.push(listener);
    return () => void this.listeners.splice(this.listeners.indexOf(listener) >>> 0, 1);
  }

  /** True while some source cannot vouch that the list is current (routes that demand freshness answer 503). */
  get degraded(): boolean {
    return this.reasons.size > 0;
  }

  status(): RevocationStatus {
    return { status: this.degraded ? 'degraded' : 'up', reasons: [...this.reasons], entries: this.list.size, lastVerifiedAt: this.verifiedAt };
  }

  /** How long an entry lives: the longest token lifetime plus the clock tolerance (Q35). */
  get entryLifetimeMs(): number {
    return this.options.maxTokenLifetimeMs + this.keycard.clockToleranceSeconds * 1000;
  }

  /**
   * Marks a source that cannot vouch for the list (`why`), or that can again (`undefined`); the
   * change is logged once.
   * @internal
   */
  setDegraded(reason: string, degraded: boolean): void {
    if (degraded === this.reasons.has(reason)) return;
    if (degraded) {
      this.reasons.add(reason);
      this.keycard.logger.warn(`Keycard revocation degraded: ${reason}; routes that demand freshness answer 503, others are served`);
    } else {
      this.reasons.delete(reason);
      this.keycard.logger.log(`Keycard revocation recovered: ${reason}`);
    }
  }

  /** @internal The SSF stream answered a verification event. */
  verified(at: Date): void {
    this.verifiedAt = at;
  }

  /**
   * Records a SET's `jti` once across instances (through the feed, else in memory).
   * @throws when the feed cannot be reached.
   * @internal
   */
  claimOnce(id: string, fingerprint: string): Promise<ClaimOutcome> {
    const ttlMs = this.entryLifetimeMs;
    if (this.options.feed !== undefined) return this.options.feed.claimOnce(id, fingerprint, ttlMs);
    return Promise.resolve(this.seen.claim(id, fingerprint, this.clock.now() + ttlMs, this.clock.now()));
  }

  /** Applies a change to this instance's list; a revocation ends the carriers it matches. @returns the entry now held. */
  private take(change: RevocationChange, origin: 'local' | 'shared'): RevocationEntry | undefined {
    if (change.op === 'restore') {
      if (this.list.remove(change.entry)) this.keycard.logger.log(`revocation_restored kind=${change.entry.kind} issuer=${logSafe(change.entry.issuer)} origin=${origin}`);
      return undefined;
    }
    if (change.entry.expiresAtMs <= this.clock.now()) return undefined;
    const entry = this.list.add(change.entry);
    const ended = this.lifecycle.endWhere((agent) => refuses(entry, agent), 'revoked');
    this.keycard.logger.log(
      `revocation_applied kind=${entry.kind} issuer=${logSafe(entry.issuer)} value=${logSafe(entry.value)} source=${logSafe(entry.source)}${setOf(entry)} origin=${origin} carriers_ended=${ended}`,
    );
    for (const listener of this.listeners) listener(entry, origin);
    this.events.publish({ type: 'revocation_applied', entry: revocationMatchOf(entry), origin, carriersEnded: ended });
    return entry;
  }

  private async share(change: RevocationChange): Promise<void> {
    const { feed } = this.options;
    if (feed === undefined) return;
    try {
      await withTimeout(feed.publish(change), SHARE_TIMEOUT_MS);
    } catch {
      this.pending.push(change);
      this.keycard.logger.warn('Keycard revocation: the feed is unreachable, the revocation applies here and is shared once it is back');
    }
  }

  private feedAvailable(up: boolean): void {
    this.setDegraded('store_unavailable', !up);
    if (up && this.pending.length > 0) void this.flush();
  }

  private async flush(): Promise<void> {
    const queued = this.pending;
    this.pending = [];
    for (const change of queued) await this.share(change);
  }

  private sweep(): void {
    const now = this.clock.now();
    this.list.sweep(now);
    this.seen.sweep(now);
  }

  /** @internal For tests with a moved clock: drops what expired now. */
  sweepNow(): void {
    this.sweep();
  }
}

/** ` jti=<SET jti>[ txn=<txn>]` for an entry from a SET, else nothing (log-safe). */
function setOf(entry: RevocationEntry): string {
  if (entry.setId === undefined) return '';
  return ` jti=${logSafe(entry.setId)}${entry.txn === undefined ? '' : ` txn=${logSafe(entry.txn)}`}`;
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
