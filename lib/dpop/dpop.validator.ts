import { hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import { CoarseDeadlines } from '../coarse-deadlines.js';
import type { RequestLine } from '../contexts/call-kind.interface.js';
import type { Call } from '../decision/call.js';
import type { ConnectionOpening } from '../decision/connection-opening.js';
import type { TokenValidator } from '../decision/token-validator.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardLogger } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { InvalidTokenException } from '../resource-server/keycard.exceptions.js';
import { pathOf } from '../resource-server/resource-resolver.js';
import { grpcCallOf } from '../contexts/rpc.context.js';
import { authorizationScheme, dpopHeaderValues } from './authorization-scheme.js';
import { DpopNonces } from './dpop-nonces.js';
import type { DpopOptions } from './dpop-options.js';
import { proofWindowEndMs, verifyDpopProof, type VerifiedProof } from './dpop-proof.js';
import { InMemoryDpopReplayStore } from './dpop-replay-store.js';
import { DpopReplayStoreUnavailableException, InvalidDpopProofException, UseDpopNonceException } from './dpop.exceptions.js';
import { expectedHtu } from './htu.js';
import { announceAtOpening } from './nonce-announcements.js';

/** How long a shared replay store may take before the fallback applies (its client may be queueing while it reconnects). */
const SHARED_STORE_DEADLINE_MS = 250;
/**
 * How much longer a shared store holds a record than the window: a store with a relative TTL (Redis
 * `PX`) counts it from when the write reaches it, and the replay's write may reach it later than
 * the original's by up to the deadline (abandoned at most a fifth later), though both passed the
 * window check at its last millisecond. A write later than that is not awaited (the fallback applies).
 */
export const SHARED_STORE_RECORD_MARGIN_MS = SHARED_STORE_DEADLINE_MS + Math.ceil(SHARED_STORE_DEADLINE_MS / 5);

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
 * - a `ws` upgrade (a connection opening with its HTTP request) and a gRPC call (its `:path` and
 *   `dpop` metadata, {@link RequestLine}) are checked the same way, with `htm` their method;
 * - where no proof can be checked (socket.io `auth`, graphql-ws `connectionParams`, TCP), a bound
 *   token is refused (Q39).
 * Synchronous with the in-memory replay store; one round trip with a shared one. The fields of one
 * GraphQL request share one proof check.
 */
export class DpopValidator implements TokenValidator {
  private readonly local = new InMemoryDpopReplayStore();
  private readonly nonces?: DpopNonces;
  /** The outcome of the proof of a request whose calls or judges share it (GraphQL fields, a gRPC stream), so one proof serves them all. */
  private readonly judged = new WeakMap<object, Promise<void> | Error | true>();
  private sharedStoreFailing = false;
  /** One ticker for every pending shared-store answer, not a timer per request (issue 22: the timers cost more than the round trip). */
  private readonly deadlines = new CoarseDeadlines(SHARED_STORE_DEADLINE_MS);

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

  validate(agent: AgentContext, call: Call | undefined, opening?: ConnectionOpening): void | Promise<void> {
    // A message on a connection was judged when the connection opened (its HTTP request, for MCP).
    if (call?.isConnection === true) return;
    const jkt = boundKey(agent);
    if (call === undefined) return this.atOpening(jkt, opening);
    const raw = call.kind.httpRequest(call.context, call.carrier);
    const line = raw === undefined ? call.kind.requestLine?.(call.context, call.carrier) : undefined;
    const scheme = raw === undefined ? line?.scheme : authorizationScheme(raw);
    if (scheme !== 'dpop') return this.refuseWithoutProof(jkt, raw ?? line);
    const presented: Presented = { resource: call.resource?.id ?? '', token: call.token ?? '', jkt, call };
    // A gRPC call's metadata is its request: Nest runs the guards of a `@GrpcStreamCall` twice, concurrently.
    if (raw === undefined) return this.checkOnce(call.carrier, line!, presented);
    if (!call.kind.sharedCarrier) return this.checkProof(requestLineOf(raw), presented);
    return this.checkOnce(raw, raw, presented);
  }

  /**
   * A connection opening (Q39): a `ws` upgrade or a socket.io handshake (its first HTTP request)
   * with the DPoP scheme has its proof checked here, once per request (`htm` GET, `htu` the public
   * URL of the request's path; the socket.io namespaces of one engine.io connection share it); a
   * token in a payload cannot be, so a bound one is refused.
   */
  private atOpening(jkt: string | undefined, opening: ConnectionOpening | undefined): void | Promise<void> {
    const request = opening?.request;
    if (request === undefined || authorizationScheme(request) !== 'dpop') return this.refuseWithoutProof(jkt, request);
    return this.checkOnce(request, request, { resource: opening!.resource.id, token: opening!.token, jkt, opening: request });
  }

  /**
   * A token sent without the DPoP scheme: fine unless bound to a key (§7.2), or unless DPoP is
   * `required` (H24): where no request could carry a proof (socket.io `auth`, graphql-ws
   * `connectionParams`, TCP), the extractors cannot tell, so the token is refused here (Q39).
   */
  private refuseWithoutProof(jkt: string | undefined, request: object | undefined): void {
    if (jkt === undefined && this.parts.options.mode === 'required') throw new InvalidTokenException(request === undefined ? 'dpop_carrier_unsupported' : 'dpop_scheme_required');
    refuseBoundToken(jkt, request);
  }

  /**
   * One proof check per HTTP request, whichever of its calls or judges comes first (H27): `request`
   * is the request (a Node request, a gRPC call's metadata), `source` where its proof is read.
   */
  private checkOnce(request: object, source: IncomingMessage | RequestLine, presented: Presented): void | Promise<void> {
    const earlier = this.judged.get(request);
    if (earlier === true) return;
    if (earlier instanceof Error) throw earlier;
    if (earlier !== undefined) return earlier;
    try {
      const outcome = this.checkProof('proofs' in source ? source : requestLineOf(source), presented);
      this.judged.set(request, outcome ?? true);
      return outcome;
    } catch (error) {
      this.judged.set(request, error as Error);
      throw error;
    }
  }

  private checkProof(line: RequestLine, presented: Presented): void | Promise<void> {
    const { proofs } = line;
    // One proof per request (§4.3 (1)); a comma never occurs in a compact JWS, so it means two joined.
    if (proofs.length !== 1 || proofs[0].includes(',')) throw new InvalidDpopProofException();
    const { jkt } = presented;
    if (jkt === undefined) throw new InvalidTokenException('dpop_token_unbound');
    const htu = expectedHtu(originOf(presented.resource), line.path);
    if (htu === undefined) throw new InvalidDpopProofException();
    const nowMs = this.parts.clock.now();
    const proof = verifyDpopProof({ proof: proofs[0], method: line.method, htu, accessToken: presented.token, boundKey: jkt, nowMs }, this.parts.options);
    this.checkNonce(presented, proof, nowMs);
    return this.remember(proof, nowMs);
  }

  /** §9: a nonce this API issued, still alive; one past half its life earns a new one on the answer (§8.2). */
  private checkNonce(presented: Presented, proof: VerifiedProof, nowMs: number): void {
    const { nonces } = this;
    if (nonces === undefined) return;
    const state = nonces.judge(proof.nonce, nowMs);
    if (state === 'invalid') throw new UseDpopNonceException(nonces.issue(nowMs));
    if (state === 'aging') announceNonce(presented, nonces.issue(nowMs));
  }

  /** The replay record (§11.1), until the proof's window closes: `iat` + window, not first use + window (H15). */
  private remember(proof: VerifiedProof, nowMs: number): void | Promise<void> {
    // SHA-256 of the thumbprint and the `jti` as one string: the digest of the two hashed in turn, so
    // records in a shared store keep their keys across versions; one-shot, no Hash object.
    const key = hash('sha256', proof.jkt + proof.jti, 'base64url');
    const expiresAtMs = proofWindowEndMs(proof.iat, this.parts.options.proofWindowSeconds);
    const store = this.parts.options.replayStore;
    if (store === undefined) return refuseReplay(this.local.remember(key, expiresAtMs, nowMs));
    let pending: boolean | Promise<boolean>;
    try {
      pending = store.remember(key, expiresAtMs + SHARED_STORE_RECORD_MARGIN_MS, nowMs);
    } catch (error) {
      pending = Promise.reject(error);
    }
    if (!(pending instanceof Promise)) return refuseReplay(pending);
    return this.deadlines.within(pending).then(
      (fresh) => {
        this.sharedStoreFailing = false;
        // A proof accepted while the shared store failed is held only here: the shared store, back,
        // does not know it, so its replay on this instance is refused by the local record (H18).
        refuseReplay(fresh && !this.local.holds(key, nowMs));
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

/** The token and resource a proof is checked against, and the call when there is one (its answer may carry a new nonce). */
interface Presented {
  /** The resource identifier: its origin is the public origin of `htu` (Q39). */
  readonly resource: string;
  readonly token: string;
  /** `cnf.jkt` of the token. */
  readonly jkt: string | undefined;
  readonly call?: Call;
  /** The HTTP request that opens a connection (a `ws` upgrade, a socket.io handshake). */
  readonly opening?: IncomingMessage;
}

/**
 * A new nonce on the answer (§8.2): an HTTP response's headers; a gRPC call's initial metadata
 * (`dpop-nonce`); the 101 of a `ws` upgrade (through its server's `headers` event). A socket.io
 * handshake was answered before its middleware runs: its next opening learns a nonce from the
 * `use_dpop_nonce` refusal instead.
 */
function announceNonce({ call, opening }: Presented, nonce: string): void {
  if (opening !== undefined) return announceAtOpening(opening, nonce);
  if (call === undefined) return;
  const response = call.kind.httpResponse(call.context, call.carrier);
  if (response !== undefined) {
    response.setHeader('DPoP-Nonce', nonce);
    response.setHeader('Cache-Control', 'no-store');
    return;
  }
  const grpc = grpcCallOf(call.context) as { sendMetadata?: (metadata: object) => void } | undefined;
  if (typeof grpc?.sendMetadata !== 'function') return;
  // Built with the class of the call's own metadata: grpc-js sends only its `Metadata` (never imported here).
  const metadata = new (call.carrier.constructor as new () => { set(key: string, value: string): void })();
  metadata.set('dpop-nonce', nonce);
  grpc.sendMetadata(metadata);
}

/**
 * A token sent without the DPoP scheme: fine unless bound to a key (§7.2). Where the call has a
 * request that could carry a proof, the scheme was wrong; elsewhere no proof can be checked (Q39).
 */
function refuseBoundToken(jkt: string | undefined, request: object | undefined): void {
  if (jkt !== undefined) throw new InvalidTokenException(request === undefined ? 'dpop_carrier_unsupported' : 'dpop_scheme_required');
}

function refuseReplay(fresh: boolean): void {
  if (!fresh) throw new InvalidDpopProofException('dpop_proof_replayed');
}

/** `cnf.jkt` of a verified token, when it is bound to a DPoP key (RFC 9449 §6.1). */
export function boundKey(agent: AgentContext): string | undefined {
  const cnf = agent.claims.cnf as { jkt?: unknown } | undefined;
  return typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
}

/** The request line of a Node request whose credentials use the DPoP scheme. */
function requestLineOf(raw: IncomingMessage): RequestLine {
  return { method: raw.method ?? '', path: routedPath(raw), scheme: 'dpop', proofs: dpopHeaderValues(raw) };
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
