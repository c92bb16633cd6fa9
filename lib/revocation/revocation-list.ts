import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { matches, merged, type RevocationEntry, type RevocationKind } from './revocation.js';

type ByValue = Map<string, RevocationEntry[]>;

/**
 * The revocation list of one instance, in memory: entries by session, user, agent and token,
 * each under its issuer. A lookup walks at most four nested maps with the token's own claim
 * strings, so a miss allocates nothing; {@link version} changes whenever an entry is added, so a
 * verdict taken at one version holds until the next (the validator keeps one per token).
 */
export class RevocationList {
  private readonly kinds: Record<RevocationKind, Map<string, ByValue>> = {
    session: new Map(),
    subject: new Map(),
    agent: new Map(),
    token: new Map(),
  };
  private count = 0;
  /** Bumped on every addition: a token found clear at one version may be refused at the next. */
  version = 0;

  /** How many entries are held (expired ones until the next {@link sweep}). */
  get size(): number {
    return this.count;
  }

  /**
   * Adds `entry`, merged with the entry already held for the same target (see `merged`).
   * @returns the entry now held.
   */
  add(entry: RevocationEntry): RevocationEntry {
    const byValue = this.byValue(entry.kind, entry.issuer, true)!;
    const list = byValue.get(entry.value) ?? [];
    const at = list.findIndex((held) => held.subject === entry.subject);
    const kept = at < 0 ? entry : merged(list[at]!, entry);
    if (at < 0) {
      list.push(kept);
      this.count += 1;
    } else list[at] = kept;
    byValue.set(entry.value, list);
    this.version += 1;
    return kept;
  }

  /** Removes the entry of `target` (restore). @returns whether one was held. */
  remove(target: Pick<RevocationEntry, 'kind' | 'issuer' | 'value' | 'subject'>): boolean {
    const byValue = this.byValue(target.kind, target.issuer, false);
    const list = byValue?.get(target.value);
    const at = list?.findIndex((held) => held.subject === target.subject) ?? -1;
    if (at < 0) return false;
    list!.splice(at, 1);
    if (list!.length === 0) byValue!.delete(target.value);
    if (byValue!.size === 0) this.kinds[target.kind].delete(target.issuer);
    this.count -= 1;
    return true;
  }

  /**
   * The entry that refuses `agent` at `nowMs`, or `undefined`. Allocation-free on a miss.
   */
  find(agent: AgentContext, nowMs: number): RevocationEntry | undefined {
    if (this.count === 0) return undefined;
    const { issuer } = agent;
    return (
      (agent.sessionId === undefined ? undefined : this.match('session', issuer, agent.sessionId, agent, nowMs)) ??
      (agent.tokenId === undefined ? undefined : this.match('token', issuer, agent.tokenId, agent, nowMs)) ??
      this.match('agent', issuer, agent.agentId, agent, nowMs) ??
      this.match('subject', issuer, agent.subject, agent, nowMs)
    );
  }

  /** Every entry held, for a snapshot or a test. */
  *entries(): IterableIterator<RevocationEntry> {
    for (const byIssuer of Object.values(this.kinds)) {
      for (const byValue of byIssuer.values()) for (const list of byValue.values()) yield* list;
    }
  }

  /** Drops the entries that expired by `nowMs` (each has outlived every token it could match). @returns how many. */
  sweep(nowMs: number): number {
    let dropped = 0;
    for (const entry of [...this.entries()]) {
      if (entry.expiresAtMs <= nowMs && this.remove(entry)) dropped += 1;
    }
    return dropped;
  }

  private byValue(kind: RevocationKind, issuer: string, create: boolean): ByValue | undefined {
    const byIssuer = this.kinds[kind];
    let byValue = byIssuer.get(issuer);
    if (byValue === undefined && create) byIssuer.set(issuer, (byValue = new Map()));
    return byValue;
  }

  private match(kind: RevocationKind, issuer: string, value: string, agent: AgentContext, nowMs: number): RevocationEntry | undefined {
    const list = this.kinds[kind].get(issuer)?.get(value);
    if (list === undefined) return undefined;
    for (const entry of list) if (entry.expiresAtMs > nowMs && matches(entry, agent)) return entry;
    return undefined;
  }
}
