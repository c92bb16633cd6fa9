import { randomBytes } from 'node:crypto';
import { principalOf, samePrincipal, type Principal } from '../decision/principal.js';

/** Options of {@link McpStateHandles}. */
export interface McpStateHandlesOptions {
  /** How long a handle lives after it was minted, in seconds. @default 3600 */
  ttlSeconds?: number;
  /** Most handles kept; beyond it the oldest is forgotten (a flood costs memory up to this bound). @default 100000 */
  maxHandles?: number;
  /** The clock, in milliseconds since the epoch (tests). @default Date.now */
  now?: () => number;
}

/** Random bits of a handle: well past the 128 the MCP security best practices ask of unguessable ids. */
const HANDLE_BYTES = 32;

interface Entry<T> {
  readonly owner: Principal;
  value: T;
  readonly expiresAt: number;
}

/**
 * State handles for stateless MCP servers (MCP 2026-07-28 security best practices, §State Handle
 * Hijacking: "MUST NOT treat possession of a state handle as authentication"; "SHOULD bind handles
 * server-side … reject a handle presented by any other principal"; catalogue U14, Q19). A tool mints
 * a handle for the verified principal (`@Agent()`); any later call that presents it gets the value
 * only as that same principal (issuer, user and stable agent id, so a fresh token keeps it). Another
 * principal, a changed handle, an expired or unknown one all read the same `undefined`: answer them
 * alike (e.g. "unknown cart"), so a handle's existence never leaks. In memory, per instance.
 *
 * @example
 * ```ts
 * const carts = new McpStateHandles<string[]>();
 * @Tool({ name: 'cart_create' }) create(@Agent() agent: AgentContext) { return { cart: carts.mint(agent, []) }; }
 * @Tool({ name: 'cart_add' }) add({ cart, item }, _ctx, @Agent() agent: AgentContext) {
 *   const items = carts.get(agent, cart);
 *   if (items === undefined) return { isError: true, content: [{ type: 'text', text: 'unknown cart' }] };
 *   items.push(item);
 * }
 * ```
 * @publicApi
 */
export class McpStateHandles<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly ttlMs: number;
  private readonly maxHandles: number;
  private readonly now: () => number;

  /** @throws TypeError when `ttlSeconds` or `maxHandles` is not a positive number. */
  constructor(options: McpStateHandlesOptions = {}) {
    this.ttlMs = positive('ttlSeconds', options.ttlSeconds ?? 3600) * 1000;
    this.maxHandles = positive('maxHandles', options.maxHandles ?? 100_000);
    this.now = options.now ?? Date.now;
  }

  /** A new handle (256 random bits, base64url) bound to `principal`, holding `value`. */
  mint(principal: Principal, value: T): string {
    const handle = randomBytes(HANDLE_BYTES).toString('base64url');
    this.entries.set(handle, { owner: principalOf(principal), value, expiresAt: this.now() + this.ttlMs });
    if (this.entries.size > this.maxHandles) this.entries.delete(this.entries.keys().next().value!);
    return handle;
  }

  /** The value of `handle` when `principal` minted it and it has not expired; else `undefined`, whatever the reason. */
  get(principal: Principal, handle: unknown): T | undefined {
    return this.entryOf(principal, handle)?.value;
  }

  /** Replaces the value of a handle `principal` holds. @returns `false` (and changes nothing) where {@link get} reads `undefined`. */
  set(principal: Principal, handle: unknown, value: T): boolean {
    const entry = this.entryOf(principal, handle);
    if (entry !== undefined) entry.value = value;
    return entry !== undefined;
  }

  /** Ends a handle `principal` holds. @returns whether it did. */
  delete(principal: Principal, handle: unknown): boolean {
    return this.entryOf(principal, handle) !== undefined && this.entries.delete(handle as string);
  }

  private entryOf(principal: Principal, handle: unknown): Entry<T> | undefined {
    const entry = typeof handle === 'string' ? this.entries.get(handle) : undefined;
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(handle as string);
      return undefined;
    }
    return samePrincipal(entry.owner, principal) ? entry : undefined;
  }
}

function positive(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TypeError(`McpStateHandles: '${option}' must be a positive number`);
  return value;
}
