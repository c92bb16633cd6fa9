import { Inject, Injectable } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { expiryMsOf } from '../resource-server/access-token-rules.js';
import { samePrincipal } from './principal.js';

/** Why the module ends a carrier: its token expired, or was revoked before its `exp`. */
export type CarrierEndReason = 'expired' | 'revoked';

/**
 * A long-lived carrier as a door hands it to {@link CarrierLifecycle}: the agent it opened with,
 * and how to end it in the door's own shape (4401 close, socket.io `exception` + disconnect, gRPC
 * status 16, a final SSE `error` event, an MCP stream closed).
 */
export interface LiveCarrier {
  readonly agent: AgentContext;
  end(reason: CarrierEndReason): void;
}

/**
 * One open carrier, bound to its principal. The door calls {@link close} when the carrier closes
 * first, so no timer or reference stays behind.
 */
export interface CarrierBinding {
  /** The agent whose token currently keeps the carrier open. */
  readonly agent: AgentContext;
  /** True once the token's `exp` + clock tolerance has passed, by the module's clock. */
  expired(): boolean;
  /**
   * Takes a fresh token of the **same** principal (Q18: issuer, user, stable agent id): the
   * carrier now lives until its expiry. Returns `false`, changing nothing, for another principal.
   */
  renew(agent: AgentContext): boolean;
  /** Stops watching the carrier (it closed); idempotent. */
  close(): void;
}

/** setTimeout's longest delay (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The one lifecycle of every long-lived carrier (WebSocket, socket.io, graphql-ws, Mercurius
 * subscriptions, gRPC streams, SSE, MCP sessions; catalogue §O, STYLE 27): bound at open to the
 * principal that opened it, ended at `exp` + clock tolerance even when nothing is due, by one
 * unref'd timer per carrier. Each door only says how to end its own carrier ({@link LiveCarrier}).
 * The open carriers are known here, so a revocation can end a principal's carriers early through
 * the same path.
 */
@Injectable()
export class CarrierLifecycle {
  private readonly toleranceMs: number;
  private readonly open = new Set<Binding>();

  constructor(
    @Inject(KEYCARD_OPTIONS) options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    this.toleranceMs = options.clockToleranceSeconds * 1000;
  }

  /**
   * Milliseconds until the agent's token is past its `exp` + clock tolerance, by the module's
   * clock; negative once it is. The one expiry rule of carriers: messages, events and timers.
   */
  msUntilExpiry(agent: AgentContext): number {
    return expiryMsOf(agent) + this.toleranceMs - this.clock.now();
  }

  /** True once the agent's token has expired for carriers ({@link msUntilExpiry} < 0). */
  expired(agent: AgentContext): boolean {
    return this.msUntilExpiry(agent) < 0;
  }

  /** Starts watching `carrier`: it is ended with `'expired'` once its agent's token expires. */
  bind(carrier: LiveCarrier): CarrierBinding {
    const binding = new Binding(this, carrier, this.open);
    this.open.add(binding);
    return binding;
  }

  /**
   * Ends now, with `reason`, every open carrier whose current agent `picked` selects (the
   * revocation list's entry point: a revoked session, user, agent or token ends its carriers
   * through the same path as expiry, catalogue X28).
   * @returns how many carriers were ended.
   */
  endWhere(picked: (agent: AgentContext) => boolean, reason: CarrierEndReason): number {
    let ended = 0;
    for (const binding of [...this.open]) {
      if (!picked(binding.agent)) continue;
      binding.end(reason);
      ended += 1;
    }
    return ended;
  }

  /** How many carriers are open now (for health and tests). */
  get size(): number {
    return this.open.size;
  }
}

class Binding implements CarrierBinding {
  private timer?: NodeJS.Timeout;
  private current: AgentContext;

  constructor(
    private readonly lifecycle: CarrierLifecycle,
    private readonly carrier: LiveCarrier,
    private readonly registry: Set<Binding>,
  ) {
    this.current = carrier.agent;
    this.arm();
  }

  get agent(): AgentContext {
    return this.current;
  }

  expired(): boolean {
    return this.lifecycle.expired(this.current);
  }

  renew(agent: AgentContext): boolean {
    if (!samePrincipal(agent, this.current)) return false;
    this.current = agent;
    clearTimeout(this.timer);
    this.arm();
    return true;
  }

  close(): void {
    clearTimeout(this.timer);
    this.registry.delete(this);
  }

  /** Re-arms when the timer fires early (a lifetime beyond setTimeout's maximum, a clock that moved). */
  private arm(): void {
    const delay = this.lifecycle.msUntilExpiry(this.current);
    this.timer = setTimeout(() => (this.expired() ? this.end('expired') : this.arm()), Math.max(0, Math.min(delay, MAX_TIMER_MS)));
    this.timer.unref();
  }

  end(reason: CarrierEndReason): void {
    this.close();
    this.carrier.end(reason);
  }
}
