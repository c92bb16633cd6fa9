/**
 * Whether a zone's introspection endpoint answers, as the health indicator shows it (decision
 * Q35): `up` once it gave an RFC 7662 answer, `degraded` from a failure until the next answer.
 * `reason` is the client's fixed description of the failure (a status, a timeout, a malformed
 * answer, our credentials refused): never a token, a credential or a body.
 * @publicApi
 */
export type IntrospectionHealth =
  | { readonly status: 'up' }
  | { readonly status: 'degraded'; readonly reason: string; /** ISO 8601: the first failure of this spell. */ readonly since: string };

/** The last outcome of each zone's introspection, by issuer; a zone never asked has none. */
export class IntrospectionOutcomes {
  private readonly byZone = new Map<string, IntrospectionHealth>();

  answered(issuer: string): void {
    if (this.byZone.get(issuer)?.status !== 'up') this.byZone.set(issuer, UP);
  }

  /** A failure at `nowMs`: the spell keeps its first instant, the reason is the latest. */
  failed(issuer: string, reason: string, nowMs: number): void {
    const held = this.byZone.get(issuer);
    const since = held?.status === 'degraded' ? held.since : new Date(nowMs).toISOString();
    this.byZone.set(issuer, { status: 'degraded', reason, since });
  }

  /** The zone's state, or `undefined` before it was ever asked. */
  of(issuer: string): IntrospectionHealth | undefined {
    return this.byZone.get(issuer);
  }
}

const UP: IntrospectionHealth = Object.freeze({ status: 'up' });
