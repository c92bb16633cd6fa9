import type { Clock } from '../../clock.js';
import { verifyJws } from '../../jws-crypto.js';
import { readJwsHeader, readUnverifiedIssuer } from '../../resource-server/compact-jws.js';
import { InvalidTokenException } from '../../resource-server/keycard.exceptions.js';
import type { VerificationKey } from '../../zone/jwks-key-store.js';
import type { SupportedAlgorithm } from '../../keycard.constants.js';
import { SSF_DESCRIPTIONS as D, SsfError } from './ssf-error.js';

/** A SET whose signature and envelope were verified (RFC 8417 §2.2, SSF 1.0 §4.1). */
export interface VerifiedSet {
  readonly jti: string;
  /** The transmitter's `txn` (SSF 1.0 §4.1.9); absent when the SET has none, or one over 256 characters. */
  readonly txn?: string;
  /** `iat`, in ms since the epoch. */
  readonly issuedAtMs: number;
  /** The one event's type URI and body. */
  readonly eventType: string;
  readonly event: Readonly<Record<string, unknown>>;
  readonly subject: unknown;
  /** True when `iat` is older than the longest token lifetime: every token it could match has expired (Q33). */
  readonly stale: boolean;
}

/** What the verifier needs: the transmitter's issuer and keys, this receiver's audience, the time rules. */
export interface SetVerifierParts {
  readonly issuer: string;
  readonly audience: string;
  readonly algorithms: ReadonlySet<string>;
  /** The transmitter's key for `kid` and `alg`. @throws InvalidTokenException when it has none usable. */
  readonly keyFor: (kid: string | undefined, alg: SupportedAlgorithm) => Promise<VerificationKey>;
  readonly clock: Clock;
  readonly toleranceMs: number;
  /** A SET older than this has no effect. */
  readonly maxAgeMs: number;
}

/** `typ` values of an explicitly typed SET (SSF 1.0 §4.1.1, RFC 8417 §2.3; media types are case-insensitive). */
const SET_TYPES = new Set(['secevent+jwt', 'application/secevent+jwt']);
const MAX_JTI_LENGTH = 256;

/**
 * Verifies a Security Event Token as SSF 1.0 §4.1 and RFC 8417 require, in this order: compact
 * JWS shape, explicit `typ`, an allowed asymmetric `alg` and a key of the transmitter's own key set
 * (never from `jku`, `jwk` or `x5u` in the header, RFC 8725 §3.10), the signature, then `iss`
 * (exact), `aud` (string or array), no `exp` and no `sub` (SSF §4.1.7, §4.1.2), `iat` within the
 * bounds, a `jti`, and exactly one event (CAEP interoperability profile).
 * @throws SsfError with the RFC 8935 §2.4 code.
 */
export class SetVerifier {
  constructor(private readonly parts: SetVerifierParts) {}

  async verify(text: string): Promise<VerifiedSet> {
    const header = this.headerOf(text);
    // The issuer picks the keys before any is fetched (RFC 8725 §3.8); verified again after the signature.
    if (readUnverifiedIssuer(text) !== this.parts.issuer) throw new SsfError('invalid_issuer', D.issuer);
    const typ = header.typ;
    if (typeof typ !== 'string' || !SET_TYPES.has(typ.toLowerCase())) throw new SsfError('invalid_request', D.type);
    // RFC 7515 §4.1.11: a `crit` extension not understood MUST be refused; this receiver understands none (nor `b64`, RFC 7797).
    if ('crit' in header || 'b64' in header) throw new SsfError('invalid_request', D.critical);
    const alg = header.alg;
    if (typeof alg !== 'string' || !this.parts.algorithms.has(alg)) throw new SsfError('invalid_key', D.key);
    const key = await this.keyOf(typeof header.kid === 'string' ? header.kid : undefined, alg as SupportedAlgorithm);
    const verified = verifyJws(text, () => key.key);
    if (verified === undefined) throw new SsfError('authentication_failed', D.signature);
    return this.checked(verified.claims);
  }

  /** The protected header; a SET whose only fault is an unacceptable `alg` (`none`, an empty signature) is `invalid_key`. */
  private headerOf(text: string): Readonly<Record<string, unknown>> {
    try {
      return readJwsHeader(text);
    } catch {
      // Only a compact JWS (three segments) can have a bad key; a JWE (five) is not a SET here.
      const alg = text.split('.', 4).length === 3 ? algOf(text) : undefined;
      throw alg !== undefined && !this.parts.algorithms.has(alg) ? new SsfError('invalid_key', D.key) : new SsfError('invalid_request', D.malformed);
    }
  }

  private async keyOf(kid: string | undefined, alg: SupportedAlgorithm): Promise<VerificationKey> {
    try {
      return await this.parts.keyFor(kid, alg);
    } catch (error) {
      if (error instanceof InvalidTokenException) throw new SsfError('invalid_key', D.key);
      throw error; // the key set cannot be had now: the transmitter retries (503)
    }
  }

  private checked(claims: Record<string, unknown>): VerifiedSet {
    const { issuer, audience, clock, toleranceMs, maxAgeMs } = this.parts;
    if (claims.iss !== issuer) throw new SsfError('invalid_issuer', D.issuer);
    const aud = claims.aud;
    if (!(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) throw new SsfError('invalid_audience', D.audience);
    if (claims.exp !== undefined || claims.sub !== undefined) throw new SsfError('invalid_request', D.claims);
    const { iat, jti, txn } = claims;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new SsfError('invalid_request', D.claims);
    const now = clock.now();
    if (iat * 1000 > now + toleranceMs) throw new SsfError('invalid_request', D.claims);
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw new SsfError('invalid_request', D.claims);
    if (txn !== undefined && typeof txn !== 'string') throw new SsfError('invalid_request', D.claims);
    const [eventType, event] = theOneEvent(claims.events);
    // A `txn` is only recorded (with the entry, shared through the feed, in the audit): one too long to be an id is not.
    const recordedTxn = txn !== undefined && txn.length <= MAX_JTI_LENGTH ? txn : undefined;
    return { jti, txn: recordedTxn, issuedAtMs: iat * 1000, eventType, event, subject: claims.sub_id, stale: iat * 1000 < now - maxAgeMs };
  }
}


/** The `alg` of a header that could not be read whole, or undefined. Never throws. */
function algOf(text: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(text.slice(0, text.indexOf('.')), 'base64url').toString('utf8')) as { alg?: unknown } | null;
    return typeof header?.alg === 'string' ? header.alg : undefined;
  } catch {
    return undefined;
  }
}

/** The SET's only event (CAEP interoperability profile: "MUST contain only one event"). */
function theOneEvent(events: unknown): [string, Record<string, unknown>] {
  if (typeof events !== 'object' || events === null || Array.isArray(events)) throw new SsfError('invalid_request', D.events);
  const entries = Object.entries(events as Record<string, unknown>);
  if (entries.length !== 1) throw new SsfError('invalid_request', D.events);
  const [type, body] = entries[0]!;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new SsfError('invalid_request', D.events);
  return [type, body as Record<string, unknown>];
}
