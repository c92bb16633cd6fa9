import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import type { Call } from '../decision/call.js';
import type { TokenValidator } from '../decision/token-validator.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardLogger } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { InvalidTokenException } from '../resource-server/keycard.exceptions.js';
import { pathOf } from '../resource-server/resource-resolver.js';
import { withinDeadline } from '../within-deadline.js';
import { authorizationScheme, dpopHeaderValues } from './authorization-scheme.js';
import { DpopNonces } from './dpop-nonces.js';
import type { DpopOptions } from './dpop-options.js';
import { verifyDpopProof, type VerifiedProof } from './dpop-proof.js';
import { InMemoryDpopReplayStore } from './dpop-replay-store.js';
import { DpopReplayStoreUnavailableException, InvalidDpopProofException, UseDpopNonceException } from './dpop.exceptions.js';
import { expectedHtu } from './htu.js';

/** How long a shared replay store may take before the fallback applies (its client may be queueing while it reconnects). */
const SHARED_STORE_DEADLINE_MS = 250;

/** What the validator needs from the module. */
export interface DpopValidatorParts {
  readonly options: DpopOptions;
  readonly clock: Clock;
  readonly logger: KeycardLogger;
}

/**
 * DPoP (RFC 9449) as a {@link TokenValidator}, on every call once DPoP is on:
 * - a token bound to a key (`cnf.jkt`) sent with the Bearer scheme is refused (§7.2: 401 `invalid_token`);
 * - with the `DPoP` scheme, exactly one `DPoP` header whose proof passes §4.3 for this request
 *   (`htu` = the resource's public origin + the routed path, Q39), carries a current server nonce
 *   when nonces are on (§9), is signed by the token's key (`cnf.jkt`, §7.1), and was never seen
 *   before (its `jti` remembered until `iat` + window: §11.1, Q37);
 * - where no proof can be checked (a connection's payload, gRPC, TCP), a bound token is refused (Q39).
 * Synchronous with the in-memory replay store; one round trip with a shared one. The fields of one
 * GraphQL request share one proof check.
 */
export class DpopValidator implements TokenValidator {
  private readonly local = new InMemoryDpopReplayStore();
  private readonly nonces?: DpopNonces;
  /** The outcome of the proof of a request whose calls share it (GraphQL fields), so one proof serves them all. */
  private readonly judged = new WeakMap<IncomingMessage, Promise<void> | Error | true>();
  private sharedStoreFailing = false;

  constructor(private readonly parts: DpopValidatorParts) {
    const { nonce } = parts.options;
    if (nonce !== undefined) this.nonces = new DpopNonces(nonce);
  }

  /**
   * Where replay records go now: `memory` (no shared store configured), `shared`, or `degraded`
   * (the shared store failed and this instance remembers proofs alone until it answers again).
   */
  get replayStore(): 'memory' | 'shared' | 'degraded' {
    if (this.parts.options.replayStore === undefined) return 'memory';
    return this.sharedStoreFailing ? 'degraded' : 'shared';
  }

  /** A fresh server nonce, or undefined when nonces are off. */
  issueNonce(): string | undefined {
    return this.nonces?.issue(this.parts.clock.now());
  }

  validate(agent: AgentContext, call: Call | undefined): void | Promise<void> {
    // A message on a connection was judged when the connection opened (its HTTP request, for MCP).
    if (call?.isConnection === true) return;
    const jkt = boundKey(agent);
    if (call === undefined) {
      if (jkt !== undefined) throw new InvalidTokenException('dpop_carrier_unsupported');
      return;
    }
    const raw = call.kind.httpRequest(call.context, call.carrier);
    if (raw === undefined || authorizationScheme(raw) !== 'dpop') {
      if (jkt !== undefined) throw new InvalidTokenException(raw === undefined ? 'dpop_carrier_unsupported' : 'dpop_scheme_required');
      return;
    }
    if (!call.kind.sharedCarrier) return this.checkProof(call, raw, jkt);
    return this.checkOnce(call, raw, jkt);
  }

  /** One proof check per HTTP request, whichever of its calls comes first (H27). */
  private checkOnce(call: Call, raw: IncomingMessage, jkt: string | undefined): void | Promise<void> {
    const earlier = this.judged.get(raw);
    if (earlier === true) return;
    if (earlier instanceof Error) throw earlier;
    if (earlier !== undefined) return earlier;
    try {
      const outcome = this.checkProof(call, raw, jkt);
      this.judged.set(raw, outcome ?? true);
      return outcome;
    } catch (error) {
      this.judged.set(raw, error as Error);
      throw error;
    }
  }

  private checkProof(call: Call, raw: IncomingMessage, jkt: string | undefined): void | Promise<void> {
    const values = dpopHeaderValues(raw);
    // One proof per request (§4.3 (1)); a comma never occurs in a compact JWS, so it means two joined.
    if (values.length !== 1 || values[0].includes(',')) throw new InvalidDpopProofException();
    if (jkt === undefined) throw new InvalidTokenException('dpop_token_unbound');
    const htu = expectedHtu(originOf(call.resource?.id ?? ''), routedPath(raw));
    if (htu === undefined) throw new InvalidDpopProofException();
    const nowMs = this.parts.clock.now();
    const proof = verifyDpopProof({ proof: values[0], method: raw.method ?? '', htu, accessToken: call.token ?? '', nowMs }, this.parts.options);
    this.checkNonce(call, proof, nowMs);
    if (proof.jkt !== jkt) throw new InvalidTokenException('dpop_key_mismatch');
    return this.remember(proof, nowMs);
  }

  /** §9: a nonce this API issued, still alive; one past half its life earns a new one on the answer (§8.2). */
  private checkNonce(call: Call, proof: VerifiedProof, nowMs: number): void {
    const { nonces } = this;
    if (nonces === undefined) return;
    const state = nonces.judge(proof.nonce, nowMs);
    if (state === 'invalid') throw new UseDpopNonceException(nonces.issue(nowMs));
    if (state === 'aging') {
      const response = call.kind.httpResponse(call.context, call.carrier);
      response?.setHeader('DPoP-Nonce', nonces.issue(nowMs));
      response?.setHeader('Cache-Control', 'no-store');
    }
  }

  /** The replay record (§11.1), until the proof's window closes: `iat` + window, not first use + window (H15). */
  private remember(proof: VerifiedProof, nowMs: number): void | Promise<void> {
    const key = createHash('sha256').update(proof.jkt).update(proof.jti).digest('base64url');
    const expiresAtMs = (proof.iat + this.parts.options.proofWindowSeconds) * 1000;
    const store = this.parts.options.replayStore;
    if (store === undefined) return refuseReplay(this.local.remember(key, expiresAtMs, nowMs));
    let pending: boolean | Promise<boolean>;
    try {
      pending = store.remember(key, expiresAtMs, nowMs);
    } catch (error) {
      pending = Promise.reject(error);
    }
    if (!(pending instanceof Promise)) return refuseReplay(pending);
    return withinDeadline(pending, SHARED_STORE_DEADLINE_MS).then(
      (fresh) => {
        this.sharedStoreFailing = false;
        refuseReplay(fresh);
      },
      (error: unknown) => refuseReplay(this.fallBack(error, { key, expiresAtMs, nowMs })),
    );
  }

  /** The shared store failed: remember on this instance (one log line per outage) or refuse with 503, as configured (H18, Q37). */
  private fallBack(error: unknown, record: { key: string; expiresAtMs: number; nowMs: number }): boolean {
    if (this.parts.options.replayStoreUnavailable === 'refuse') throw new DpopReplayStoreUnavailableException();
    if (!this.sharedStoreFailing) {
      this.sharedStoreFailing = true;
      this.parts.logger.error(`DPoP replay store unavailable, remembering proofs on this instance only: ${logSafe((error as Error)?.name ?? typeof error)}`);
    }
    return this.local.remember(record.key, record.expiresAtMs, record.nowMs);
  }
}

function refuseReplay(fresh: boolean): void {
  if (!fresh) throw new InvalidDpopProofException('dpop_proof_replayed');
}

/** `cnf.jkt` of a verified token, when it is bound to a DPoP key (RFC 9449 §6.1). */
export function boundKey(agent: AgentContext): string | undefined {
  const cnf = agent.claims.cnf as { jkt?: unknown } | undefined;
  return typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
}

/**
 * The path the request line named, without its query: Express rewrites `url` inside a mounted
 * router or middleware (Apollo's at `/graphql` sees `/`) and keeps the request line's in `originalUrl`.
 */
function routedPath(raw: IncomingMessage): string {
  const original = (raw as { originalUrl?: unknown }).originalUrl;
  if (typeof original !== 'string') return pathOf(raw);
  const query = original.indexOf('?');
  return query === -1 ? original : original.slice(0, query);
}

/** `https://api.example.com` of `https://api.example.com/orders`: the public origin of a resource identifier. */
function originOf(resource: string): string {
  const end = resource.indexOf('/', resource.indexOf('//') + 2);
  return end === -1 ? resource : resource.slice(0, end);
}
