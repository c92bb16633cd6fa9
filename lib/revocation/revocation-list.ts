import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { merged, type RevocationEntry, type RevocationKind } from './revocation.js';

/** One issuer's entries: per kind, the claim value → the first slot of its chain. */
type KindIndex = Record<RevocationKind, Map<string, number>>;

/** The end of a slot chain (and of the free list). */
const NONE = -1;
const INITIAL_SLOTS = 64;

/**
 * The revocation list of one instance, in memory: entries by session, user, agent and token, each
 * under its issuer. A lookup takes the issuer's index, then at most one map lookup per kind with
 * the token's own claim strings, so a miss allocates nothing; {@link version} changes whenever an
 * entry is added, so a verdict taken at one version holds until the next (the validator keeps one
 * per token).
 *
 * Laid out for the garbage collector (issue 21): an entry is not an object but a slot — its times
 * in typed columns, its rare `subject` and its `source` in two plain columns — and the index maps
 * hold claim strings to slot numbers, which the collector does not follow. 100 000 entries are a
 * few maps, a few arrays and the claim strings (about 80 bytes each) instead of 100 000 entry
 * objects and arrays (about 390 bytes each), so every full collection of a busy server no longer
 * walks them one by one (the cost that lowered the throughput of the 100k-revocation bench rows).
 * Several entries of one claim value (a CAEP complex subject: one session of each of several
 * users) are chained through {@link next}.
 */
export class RevocationList {
  private readonly byIssuer = new Map<string, KindIndex>();
  /** `expiresAtMs` of each slot. */
  private expires = new Float64Array(INITIAL_SLOTS);
  /** `issuedBeforeMs` of each slot; NaN when the entry matches every token. */
  private issuedBefore = new Float64Array(INITIAL_SLOTS);
  /** The next slot of the same claim value, or of the free list; {@link NONE} at the end. */
  private next = new Int32Array(INITIAL_SLOTS).fill(NONE);
  /** `subject` of each slot (undefined for most), `source`, and an SSF entry's `setId` and `txn` (undefined for others). */
  private readonly subjects: (string | undefined)[] = [];
  private readonly sources: string[] = [];
  private readonly setIds: (string | undefined)[] = [];
  private readonly txns: (string | undefined)[] = [];
  /** Slots ever used; slots freed by {@link remove} are reused first. */
  private used = 0;
  private freeSlot = NONE;
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
    const byValue = this.valuesOf(entry.kind, entry.issuer, true)!;
    const first = byValue.get(entry.value) ?? NONE;
    const held = this.slotFor(first, entry.subject);
    this.version += 1;
    if (held !== NONE) {
      const kept = merged(this.entryAt(entry, held), entry);
      this.write(held, kept);
      return kept;
    }
    const slot = this.allocate();
    this.write(slot, entry);
    this.next[slot] = first;
    byValue.set(entry.value, slot);
    this.count += 1;
    return entry;
  }

  /** Removes the entry of `target` (restore). @returns whether one was held. */
  remove(target: Pick<RevocationEntry, 'kind' | 'issuer' | 'value' | 'subject'>): boolean {
    const byValue = this.valuesOf(target.kind, target.issuer, false);
    let slot = byValue?.get(target.value) ?? NONE;
    let before = NONE;
    while (slot !== NONE && this.subjects[slot] !== target.subject) {
      before = slot;
      slot = this.next[slot]!;
    }
    if (slot === NONE) return false;
    const after = this.next[slot]!;
    if (before !== NONE) this.next[before] = after;
    else if (after !== NONE) byValue!.set(target.value, after);
    else byValue!.delete(target.value);
    this.release(slot);
    this.dropEmptyIssuer(target.issuer);
    this.count -= 1;
    return true;
  }

  /**
   * The entry that refuses `agent` at `nowMs`, or `undefined`. Allocation-free on a miss: one
   * lookup of the issuer, then one per kind of claim the token carries.
   */
  find(agent: AgentContext, nowMs: number): RevocationEntry | undefined {
    if (this.count === 0) return undefined;
    const kinds = this.byIssuer.get(agent.issuer);
    if (kinds === undefined) return undefined;
    const slot = this.matching(kinds, agent, nowMs);
    return slot === undefined ? undefined : this.entryAt({ kind: slot.kind, issuer: agent.issuer, value: slot.value }, slot.at);
  }

  /** Every entry held, for a snapshot or a test. */
  *entries(): IterableIterator<RevocationEntry> {
    for (const [issuer, kinds] of this.byIssuer) {
      for (const kind of Object.keys(kinds) as RevocationKind[]) {
        for (const [value, first] of kinds[kind]) {
          for (let slot = first; slot !== NONE; slot = this.next[slot]!) yield this.entryAt({ kind, issuer, value }, slot);
        }
      }
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

  /** The first live slot whose entry refuses `agent`, in the order session, token, agent, user. */
  private matching(kinds: KindIndex, agent: AgentContext, nowMs: number): { kind: RevocationKind; value: string; at: number } | undefined {
    const { sessionId, tokenId, agentId, subject } = agent;
    let at = sessionId === undefined ? NONE : this.live(kinds.session.get(sessionId), agent, nowMs);
    if (at !== NONE) return { kind: 'session', value: sessionId!, at };
    at = tokenId === undefined ? NONE : this.live(kinds.token.get(tokenId), agent, nowMs);
    if (at !== NONE) return { kind: 'token', value: tokenId!, at };
    at = this.live(kinds.agent.get(agentId), agent, nowMs);
    if (at !== NONE) return { kind: 'agent', value: agentId, at };
    at = this.live(kinds.subject.get(subject), agent, nowMs);
    return at === NONE ? undefined : { kind: 'subject', value: subject, at };
  }

  /** The first slot of the chain from `first` that has not expired and matches `agent` (its `sub`, its `iat` bound). */
  private live(first: number | undefined, agent: AgentContext, nowMs: number): number {
    for (let slot = first ?? NONE; slot !== NONE; slot = this.next[slot]!) {
      if (this.expires[slot]! <= nowMs) continue;
      const subject = this.subjects[slot];
      if (subject !== undefined && subject !== agent.subject) continue;
      const bound = this.issuedBefore[slot]!;
      if (Number.isNaN(bound) || agent.issuedAt.getTime() < bound) return slot;
    }
    return NONE;
  }

  /** The slot of the chain from `first` held for `subject`, or {@link NONE}. */
  private slotFor(first: number, subject: string | undefined): number {
    let slot = first;
    while (slot !== NONE && this.subjects[slot] !== subject) slot = this.next[slot]!;
    return slot;
  }

  private entryAt(target: Pick<RevocationEntry, 'kind' | 'issuer' | 'value'>, slot: number): RevocationEntry {
    const bound = this.issuedBefore[slot]!;
    const entry: RevocationEntry = {
      kind: target.kind,
      issuer: target.issuer,
      value: target.value,
      subject: this.subjects[slot],
      issuedBeforeMs: Number.isNaN(bound) ? undefined : bound,
      expiresAtMs: this.expires[slot]!,
      source: this.sources[slot]!,
    };
    const setId = this.setIds[slot];
    return setId === undefined ? entry : { ...entry, setId, txn: this.txns[slot] };
  }

  private write(slot: number, entry: RevocationEntry): void {
    this.expires[slot] = entry.expiresAtMs;
    this.issuedBefore[slot] = entry.issuedBeforeMs ?? Number.NaN;
    this.subjects[slot] = entry.subject;
    this.sources[slot] = entry.source;
    // Written only for entries from a SET (and a slot that held one): the others cost these columns nothing.
    if (entry.setId !== undefined || this.setIds[slot] !== undefined) {
      this.setIds[slot] = entry.setId;
      this.txns[slot] = entry.txn;
    }
  }

  private allocate(): number {
    if (this.freeSlot !== NONE) {
      const slot = this.freeSlot;
      this.freeSlot = this.next[slot]!;
      return slot;
    }
    if (this.used === this.expires.length) this.grow();
    return this.used++;
  }

  private release(slot: number): void {
    this.subjects[slot] = undefined;
    this.sources[slot] = '';
    if (this.setIds[slot] !== undefined) this.setIds[slot] = this.txns[slot] = undefined;
    this.next[slot] = this.freeSlot;
    this.freeSlot = slot;
  }

  private grow(): void {
    const size = this.expires.length * 2;
    const expires = new Float64Array(size);
    expires.set(this.expires);
    const issuedBefore = new Float64Array(size);
    issuedBefore.set(this.issuedBefore);
    const next = new Int32Array(size).fill(NONE);
    next.set(this.next);
    this.expires = expires;
    this.issuedBefore = issuedBefore;
    this.next = next;
  }

  private valuesOf(kind: RevocationKind, issuer: string, create: boolean): Map<string, number> | undefined {
    let kinds = this.byIssuer.get(issuer);
    if (kinds === undefined && create) {
      kinds = { session: new Map(), subject: new Map(), agent: new Map(), token: new Map() };
      this.byIssuer.set(issuer, kinds);
    }
    return kinds?.[kind];
  }

  private dropEmptyIssuer(issuer: string): void {
    const kinds = this.byIssuer.get(issuer)!;
    if (kinds.session.size + kinds.subject.size + kinds.agent.size + kinds.token.size === 0) this.byIssuer.delete(issuer);
  }
}
