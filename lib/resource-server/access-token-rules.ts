import type { ActorChain, AgentContext } from '../interfaces/agent-context.interface.js';
import { InvalidTokenException } from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { SupportedAlgorithm } from '../keycard.constants.js';
import { frozenAudience, frozenStrings, frozenWords, NO_WORDS } from './frozen-lists.js';

/**
 * Most links an RFC 8693 `act` chain may have (§4.1 nests without limit). Real chains are a few
 * hops long (each hop is one token exchange); the bound exists because every link is nested JSON
 * the module walks, copies and freezes for each token it verifies, and an 8 KiB token could nest
 * more than a thousand. A deeper chain is refused as an invalid token, never cut short (issue 19).
 */
export const MAX_ACTOR_DEPTH = 32;

/**
 * Header rules checked before any key is looked up (catalogue B1–B5, B20–B22, B31, C1–C3): an
 * allow-listed `alg`, no `crit` (we understand no extension), no nested or unencoded payloads,
 * a `typ` fit for an access token, and a string `kid` if any.
 * @returns the algorithm and key id to select the key with.
 */
export function checkHeader(
  header: Readonly<Record<string, unknown>>,
  options: Pick<KeycardOptions, 'algorithms' | 'requireAtJwtType'>,
): { alg: SupportedAlgorithm; kid: string | undefined } {
  const { alg, kid, typ } = header;
  if (typeof alg !== 'string' || !options.algorithms.has(alg as SupportedAlgorithm)) {
    throw new InvalidTokenException('algorithm_not_allowed');
  }
  if ('crit' in header || 'b64' in header || 'cty' in header || 'zip' in header || 'enc' in header) {
    throw new InvalidTokenException('header_unsupported');
  }
  if (!isAcceptedType(typ, options.requireAtJwtType)) throw new InvalidTokenException('type_not_accepted');
  if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0 || kid.length > 256)) {
    throw new InvalidTokenException('key_not_found');
  }
  return { alg: alg as SupportedAlgorithm, kid };
}

/** RFC 9068 `at+jwt` in any case, with or without `application/`; `JWT` or none unless strict (Q9). */
function isAcceptedType(typ: unknown, strict: boolean): boolean {
  if (typ === undefined) return !strict;
  if (typeof typ !== 'string') return false;
  // The spellings zones send, without the two strings lower-casing makes (checked on every token).
  if (typ === 'at+jwt') return true;
  if (typ === 'JWT') return !strict;
  const type = typ.toLowerCase().replace(/^application\//, '');
  return type === 'at+jwt' || (!strict && type === 'jwt');
}

function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** `{"jkt": "<43 base64url characters>"}` and nothing else: an RFC 7638 SHA-256 thumbprint (RFC 9449 §6.1). */
function isDpopBinding(cnf: unknown): boolean {
  if (!isJsonObject(cnf)) return false;
  const keys = Object.keys(cnf);
  const { jkt } = cnf as { jkt?: unknown };
  return keys.length === 1 && typeof jkt === 'string' && /^[A-Za-z0-9_-]{43}$/.test(jkt);
}

/** `aud` names `audience`: the string itself, or an array of non-empty strings that holds it (RFC 7519 §4.1.3). */
function isAudience(aud: unknown, audience: string): boolean {
  if (typeof aud === 'string') return aud === audience;
  return Array.isArray(aud) && aud.every(isNonEmptyString) && aud.includes(audience);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

/** A non-empty string `jti`; absent only where the claim mapping allows it (T31, C21). */
function isTokenId(jti: unknown, required: boolean): jti is string | undefined {
  return jti === undefined ? !required : isNonEmptyString(jti);
}

/**
 * Claim rules of RFC 9068 §4 and catalogue §C on a payload whose signature has been verified, with
 * the clock and tolerance of the module. Builds the {@link AgentContext} handed to handlers.
 */
export function toAgentContext(
  payload: Readonly<Record<string, unknown>>,
  expected: { issuer: string; audience: string; nowSeconds: number },
  options: Pick<KeycardOptions, 'clockToleranceSeconds' | 'readScpClaim' | 'dpop' | 'claimMapping'>,
): AgentContext {
  const { iss, aud, exp, nbf, iat, sub, jti, sid, cnf } = payload;
  const clientId = options.claimMapping.agentOf(payload);
  const leeway = options.clockToleranceSeconds;
  const now = expected.nowSeconds;
  if (!isNumericDate(exp) || !isNumericDate(iat) || (nbf !== undefined && !isNumericDate(nbf))) {
    throw new InvalidTokenException('claim_invalid');
  }
  if (exp + leeway < now) throw new InvalidTokenException('expired');
  if (nbf !== undefined && (nbf as number) - leeway > now) throw new InvalidTokenException('not_yet_valid');
  if (iat - leeway > now) throw new InvalidTokenException('issued_in_future');
  if (iss !== expected.issuer) throw new InvalidTokenException('issuer_mismatch');
  if (!isAudience(aud, expected.audience)) throw new InvalidTokenException('audience_mismatch');
  if (!isNonEmptyString(sub) || !isNonEmptyString(clientId) || !isTokenId(jti, options.claimMapping.requireJti)) {
    throw new InvalidTokenException('claim_invalid');
  }
  if (sid !== undefined && typeof sid !== 'string') throw new InvalidTokenException('claim_invalid');
  // Proof-of-possession tokens must not work as plain bearer tokens (Q10, C26, C27); with DPoP on,
  // a `cnf.jkt` binding passes here and the DPoP validator asks for the proof (RFC 9449 §6.1, §7.2).
  if (typeof cnf === 'object' && cnf !== null && !(options.dpop !== undefined && isDpopBinding(cnf))) throw new InvalidTokenException('token_bound');
  return Object.freeze(new VerifiedAgent(payload as CheckedClaims, clientId, readScopes(payload, options.readScpClaim), readActor(ownMember(payload, 'act'), 1)));
}

/** A payload {@link toAgentContext} checked: the claims an agent is made of, with their types established. */
interface CheckedClaims extends Readonly<Record<string, unknown>> {
  readonly iss: string;
  readonly aud: string | readonly string[];
  readonly exp: number;
  readonly iat: number;
  readonly sub: string;
  readonly sid?: string;
  readonly jti?: string;
}

/**
 * The one class every {@link AgentContext} of this module is an instance of. Not exported from
 * the package: `request.user instanceof VerifiedAgent` proves the guard itself put it there.
 */
class VerifiedAgent implements AgentContext {
  // Declared, not initialised: the constructor sets each once (a field initialiser would define
  // every property as undefined first, twelve more writes per token).
  declare readonly clientId: string;
  declare readonly agentId: string;
  declare readonly subject: string;
  declare readonly sessionId?: string;
  declare readonly scopes: readonly string[];
  declare readonly issuer: string;
  declare readonly audience: readonly string[];
  declare readonly expiresAt: Date;
  declare readonly issuedAt: Date;
  declare readonly tokenId?: string;
  declare readonly actor?: ActorChain;
  declare readonly claims: Readonly<Record<string, unknown>>;
  /**
   * `exp` in milliseconds as verified: `expiresAt` is a `Date`, which freezing cannot make
   * read-only, so the module's expiry rules (carriers, connections, the verified-token cache) read
   * this instead. A private field rather than a `WeakMap` entry: nothing more to allocate or for
   * the garbage collector to trace per token (issue 24).
   */
  readonly #expiresAtMs: number;

  /**
   * An agent from claims already checked (a constructor of four arguments rather than one object of
   * twelve fields: nothing more to allocate per token; issue 24). `scopes` comes frozen, the
   * audience is frozen (both shared with agents whose tokens carry the same text: see
   * frozen-lists.ts), the claims deeply; the caller freezes the agent.
   */
  constructor(claims: CheckedClaims, clientId: string, scopes: readonly string[], actor: ActorChain | undefined) {
    // Field by field, in one order: one shape for every agent.
    const { aud, exp, iat } = claims;
    this.clientId = clientId;
    this.agentId = stableAgentId(claims.keycard_app_id, clientId);
    this.subject = claims.sub;
    this.sessionId = claims.sid;
    this.scopes = scopes;
    this.issuer = claims.iss;
    this.audience = frozenAudience(aud);
    this.expiresAt = new Date(exp * 1000);
    this.issuedAt = new Date(iat * 1000);
    this.tokenId = claims.jti;
    this.actor = actor;
    this.claims = deepFreeze(claims);
    this.#expiresAtMs = exp * 1000;
  }

  /** The verified `exp` in ms of an agent this class built (a brand check: a look-alike has none). */
  static expiryMsOf(agent: object): number | undefined {
    return #expiresAtMs in agent ? agent.#expiresAtMs : undefined;
  }
}

/** Keycard's `keycard_app_id` when it is a non-empty string, else the `client_id` (Q18). */
function stableAgentId(appId: unknown, clientId: string): string {
  return isNonEmptyString(appId) ? appId : clientId;
}

/** When the agent's token expires (`exp`, ms since the epoch), as verified; immune to changes of `expiresAt`. */
export function expiryMsOf(agent: AgentContext): number {
  return VerifiedAgent.expiryMsOf(agent) ?? agent.expiresAt.getTime();
}

/** True for agent contexts made by {@link toAgentContext} (and so by the guard). */
export function isVerifiedAgent(value: unknown): value is AgentContext {
  return value instanceof VerifiedAgent;
}

/** `scope` as a space-delimited string only (Q6); `scp` only when configured and `scope` is absent. */
function readScopes(payload: Readonly<Record<string, unknown>>, readScp: boolean): readonly string[] {
  const { scope, scp } = payload;
  if (typeof scope === 'string') return frozenWords(scope);
  if (scope !== undefined || !readScp) return NO_WORDS;
  if (typeof scp === 'string') return frozenWords(scp);
  if (Array.isArray(scp)) return frozenStrings(scp);
  return NO_WORDS;
}

/**
 * The `act` chain link for link as the token carries it (RFC 8693 §4.1; catalogue T29), so that
 * `AgentContext.actor` never shows a shorter chain than the token's: each link (the link at
 * `depth`, 1 for the outermost) is a JSON object whose `sub` and `client_id`, when present, are
 * non-empty strings (typed as the token's own `sub` and `client_id` are, rows C19 and C20), and
 * whose `act`, when present, is the next link. Own members only: a `__proto__` key names nothing.
 * @throws InvalidTokenException `claim_invalid` (401 `invalid_token`) for a link of another shape,
 *   and for a chain of more than {@link MAX_ACTOR_DEPTH} links (before any deeper link is read).
 */
function readActor(act: unknown, depth: number): ActorChain | undefined {
  if (act === undefined) return undefined;
  if (!isJsonObject(act) || depth > MAX_ACTOR_DEPTH) throw new InvalidTokenException('claim_invalid');
  const subject = ownMember(act, 'sub');
  const clientId = ownMember(act, 'client_id');
  if ((subject !== undefined && !isNonEmptyString(subject)) || (clientId !== undefined && !isNonEmptyString(clientId))) {
    throw new InvalidTokenException('claim_invalid');
  }
  return Object.freeze({ subject, clientId, actor: readActor(ownMember(act, 'act'), depth + 1) });
}

/** A JSON object: not `null`, not an array. */
function isJsonObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An own member of a parsed JSON object (a `__proto__` key never reads the prototype). */
function ownMember(object: object, name: string): unknown {
  return Object.hasOwn(object, name) ? (object as Record<string, unknown>)[name] : undefined;
}

/**
 * Freezes a parsed JSON value and everything in it (JSON has no prototypes to walk: own keys only).
 * @internal
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key in value) {
      // Most members are strings and numbers: no call for them.
      const member = value[key];
      if (typeof member === 'object' && member !== null) deepFreeze(member);
    }
  }
  return value;
}
