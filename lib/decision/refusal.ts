import type { Refusal } from '../contexts/call-kind.interface.js';
import { startsRun } from '../contexts/connection-refusal-runs.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import type { KeycardContexts } from '../contexts/keycard-contexts.js';
import { authorizationScheme } from '../dpop/authorization-scheme.js';
import { withDpopChallenge } from '../dpop/dpop-challenge.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';
import { InsufficientScopeException, type KeycardException } from '../resource-server/keycard.exceptions.js';
import { requestState } from '../resource-server/request-state.js';
import type { Call } from './call.js';
import { type DecisionEvents, type Outcome, refusalOutcome } from './decision-events.js';
import type { Judge } from './judge.js';

/**
 * Counts one refusal of the call in `context`. Resolves with `undefined` when the client may still
 * be refused normally, or with the error to answer instead (e.g. `ThrottlerException`, 429, or the
 * context's own 429 refusal outside HTTP); rejects only when the limiter itself failed.
 */
export type RefusalLimiter = (context: Call['context']) => Promise<unknown>;

/** What refusing needs from the module. */
export interface RefusalParts {
  readonly contexts: KeycardContexts;
  readonly events: DecisionEvents;
  readonly options: KeycardOptions;
}

/**
 * The refusal half of a decision: the error becomes a denial, counted by the refusal limiter when
 * one is registered, logged once per request, published, and answered in the call's own shape
 * (the RFC 6750 challenge over HTTP, a GraphQL error, an `exception` event, an `RpcException`).
 * Costs the same for every refused field or message: nothing here grows with the request.
 */
export class Refusals {
  /** Registered by the throttler integration (catalogue M19); the core never imports a rate limiter. */
  limiter?: RefusalLimiter;

  constructor(private readonly parts: RefusalParts) {}

  /**
   * Refuses `call` for `error`; when a limiter is registered the refusal is counted first (no await
   * otherwise), and a client over its limit gets the limiter's answer (429 in the context's own
   * kind) instead, without a challenge. Zone outages (5xx) are not the client's doing and never
   * count; a limiter that fails (its storage is down) leaves the refusal as it was. A call its
   * endpoint's transport refused (`call.transportRefusal`) is answered with that refusal as it is.
   */
  refuse(call: Call, judge: Judge, error: unknown): never | Promise<never> {
    call.token = undefined; // refused: nothing after this needs the token (INV7)
    if (call.transportRefusal !== undefined && error === call.transportRefusal) this.refuseTransport(call);
    const denial = this.parts.contexts.toDenial(error);
    const { limiter } = this;
    if (limiter === undefined || denial.getStatus() >= 500) return this.deny(call, judge, denial);
    return this.countOnce(call, limiter).then(
      (limited) => {
        if (limited === undefined) return this.deny(call, judge, denial);
        const state = requestState(call.carrier);
        this.parts.events.decided(call, { status: 429, detail: 'rate_limited', agent: call.agent ?? state.agent });
        if (call.isConnection) state.agent = undefined; // as in deny: the next message is judged afresh
        throw limited;
      },
      (failure: unknown) => {
        // The limiter itself failed: still the refusal, never a 500.
        this.parts.options.logger.error(`Refusal limiter failed: ${logSafe((failure as Error)?.name ?? typeof failure)}`);
        return this.deny(call, judge, denial);
      },
    );
  }

  /**
   * Answers a call its endpoint's transport checks refused as it was built (`call.transportRefusal`:
   * MCP `Origin`, header–body consistency, catalogue Q30, Q31) with what they threw, synchronously,
   * published like every refusal (the decision-core issue item 2). No token was read: nothing to
   * count, log or challenge.
   * @throws the endpoint's refusal.
   */
  private refuseTransport(call: Call): never {
    const refusal = call.transportRefusal;
    if (this.parts.events.active) this.parts.events.decided(call, transportOutcome(refusal));
    throw refusal;
  }

  /**
   * Counts the refusal once per request where several calls share it (the fields of one GraphQL
   * operation: 10 000 refused aliases are one refused request, not 10 000 increments of the
   * client's counter); every other call, each message of a connection included, counts on its own.
   */
  private countOnce(call: Call, limiter: RefusalLimiter): Promise<unknown> {
    if (!call.kind.sharedCarrier || call.isConnection) return limiter(call.context);
    const state = requestState(call.carrier);
    return (state.limited ??= limiter(call.context));
  }

  /**
   * Makes `denial` the answer, of the context's own kind: challenge headers written where there is
   * an HTTP response, denial logged, published. Throws (or rejects, when the context's exception
   * class is loaded on first use).
   */
  private deny(call: Call, judge: Judge, denial: KeycardException): never | Promise<never> {
    const { kind, carrier } = call;
    const state = requestState(carrier);
    const who = call.agent ?? state.agent;
    // One line per request: the fields of one GraphQL operation share its token, so a second refusal
    // (another field, 200 aliases lacking a scope) says nothing new. Connections are no request:
    // a run of the same refusal there writes its first line, then one summary (O5).
    const logged = kind.sharedCarrier && state.denialLogged === true && !call.isConnection;
    state.denial = denial.code;
    if (!logged && (!call.isConnection || this.startsRun(call, denial, who))) {
      state.denialLogged = true;
      judge.logDenial(call.describe(), denial, who);
    }
    if (this.parts.events.active) this.parts.events.decided(call, refusalOutcome(denial, who));
    if (call.isConnection) state.agent = undefined; // the next message is judged afresh
    const refusal = kind.refuse(new PendingRefusal(this, call, denial));
    if (refusal instanceof Promise) return refusal.then((e) => Promise.reject(e));
    throw refusal;
  }

  /** Whether a message refused on a connection starts a run of its refusal (its line is written), see {@link startsRun}. */
  private startsRun(call: Call, denial: KeycardException, agent: AgentContext | undefined): boolean {
    const { kind, context } = call;
    const handler = kind.part?.(context) ?? call.describe();
    return startsRun({ carrier: call.carrier, handler, denial, agent, describe: () => call.describe(), logger: this.parts.options.logger });
  }

  /**
   * The refusal's headers (the RFC 6750 challenge; with DPoP on, the RFC 9449 §7.1 challenge too). Where several calls share one HTTP response (the
   * fields of a GraphQL operation, MCP tool calls), each refusal writes the challenge again, so it
   * names every scope refused in the request so far, not only the last field's: a client that steps
   * up asks once for all it needs (RFC 6750 §3: the scope necessary to access the resource). The set
   * grows with distinct scopes only, so a refusal costs the same however many fields came before.
   * Built when the door reads them ({@link PendingRefusal}): a gateway message has no header to write.
   * @internal
   */
  challengeHeaders(call: Call, denial: KeycardException): Readonly<Record<string, string>> {
    const headers = this.bearerChallengeHeaders(call, denial);
    const { dpop } = this.parts.options;
    if (dpop === undefined) return headers;
    return withDpopChallenge(headers, { denial, scheme: schemeOf(call), dpop });
  }

  private bearerChallengeHeaders(call: Call, denial: KeycardException): Record<string, string> {
    const { kind, carrier } = call;
    const prm = call.resource?.metadataUrl;
    const { realm } = this.parts.options;
    const scopeParam = scopeParamOf(call);
    if (!kind.sharedCarrier || call.isConnection) return denial.headers(prm, realm, scopeParam);
    const named = (requestState(carrier).challengeScopes ??= new Set());
    for (const scope of denial.scopeNamed(scopeParam)?.split(' ') ?? []) named.add(scope);
    if (denial instanceof InsufficientScopeException) return new InsufficientScopeException([...named]).headers(prm, realm);
    return denial.headers(prm, realm, named.size > 0 ? [...named].join(' ') : undefined);
  }
}

/**
 * A refusal as its door answers it ({@link Refusal}), its challenge headers built on first read:
 * doors without an HTTP response to write them on (a gateway message, graphql-ws, TCP) never pay
 * for them, which is most of what a refused message would allocate otherwise (catalogue O5).
 */
class PendingRefusal implements Refusal {
  readonly context: Call['context'];
  readonly carrier: Call['carrier'];
  readonly requiredScopes: string | undefined;
  private built?: Readonly<Record<string, string>>;

  constructor(
    private readonly refusals: Refusals,
    private readonly call: Call,
    readonly denial: KeycardException,
  ) {
    this.context = call.context;
    this.carrier = call.carrier;
    this.requiredScopes = scopeParamOf(call);
  }

  get headers(): Readonly<Record<string, string>> {
    return (this.built ??= this.refusals.challengeHeaders(this.call, this.denial));
  }
}

/**
 * The outcome of a transport refusal: its HTTP status and the code it names (`forbidden_origin`,
 * `header_mismatch`); anything else an endpoint throws there is a 500.
 */
function transportOutcome(refusal: unknown): Outcome {
  const { code, getStatus } = refusal as { code?: unknown; getStatus?: () => number };
  const status = typeof getStatus === 'function' ? (refusal as { getStatus(): number }).getStatus() : 500;
  return code === 'forbidden_origin' || code === 'header_mismatch' ? { status, detail: code } : { status };
}

/** The auth-scheme `call`'s credentials used (its HTTP request's, or a gRPC call's metadata), for the error's challenge. */
function schemeOf(call: Call): string | undefined {
  const raw = call.kind.httpRequest(call.context, call.carrier);
  return raw === undefined ? call.kind.requestLine?.(call.context, call.carrier)?.scheme : authorizationScheme(raw);
}

/**
 * The scopes a refusal of `call` names (space-joined): all the call needs, also when it was refused
 * before the policy judged it (no token, a bad one) — on an MCP endpoint the tool's with the
 * endpoint's, so a 401 names what a 403 would and the client asks the zone once (Q12, O23).
 */
function scopeParamOf(call: Call): string | undefined {
  return call.operation === undefined ? call.rules.scopeParam : call.operation.scopes?.join(' ');
}
