import { Inject, Injectable } from '@nestjs/common';
import { createPublicKey, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
import { JWS_HASH, verifyOptionsFor } from '../jws-crypto.js';
import type JwksRsa from 'jwks-rsa';
import {
  CACHE_MAX_AGE_MS, JWKS_COOLDOWN_MS, KEYCARD_CLOCK, KEYCARD_OPTIONS, MIN_RSA_BITS,
  STALE_IF_ERROR_MS, type SupportedAlgorithm,
} from '../keycard.constants.js';
import { InvalidTokenException, ZoneUnavailableException } from '../resource-server/keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { Clock } from '../clock.js';
import { RefreshingValue } from './refreshing-value.js';
import { LOG_MESSAGE_MAX_LENGTH, logSafe } from '../logging/log-safe.js';
import { fetchZoneJson, ZoneFetchError } from './zone-fetch.js';
import { requireFromHost } from './host-require.cjs';
import { ZoneMetadataService } from './zone-metadata.service.js';

/**
 * A zone key selected for one algorithm: imported once per fetch, never per request. A JWK usable
 * for several algorithms (an RSA key without `alg`: RS256 and PS256) yields one object per algorithm,
 * so "is this still the key for this kid and alg" is an identity check.
 */
export interface VerificationKey {
  readonly kid?: string;
  /** The JWS algorithm this key was selected for (allowed by the options and by the JWK). */
  readonly alg: string;
  readonly key: KeyObject;
  /** The hash of {@link alg} (`sha256` for RS256), for `crypto.verify`. */
  readonly hash: string;
  /** {@link key} as `crypto.verify` takes it for {@link alg} (its padding or signature encoding), made at import. */
  readonly verifyWith: KeyObject | VerifyKeyObjectInput;
}

/**
 * The keys of one `kid` (or of a sole key without one) by algorithm: the one usable key, or
 * `'ambiguous'` when several usable keys offer that algorithm (E16). Keys unusable for an
 * algorithm are never in its entry, so they cannot make a usable one ambiguous (M17). Empty when
 * the kid names only unusable keys.
 */
type KeysByAlgorithm = ReadonlyMap<string, VerificationKey | 'ambiguous'>;

/** The outcome of one JWKS fetch: keys by `kid` and algorithm. */
interface KeySet {
  readonly jwksUri: string;
  readonly byKid: ReadonlyMap<string, KeysByAlgorithm>;
  /** The only key when the set holds exactly one JWK (then a token may omit `kid`, catalogue E17). */
  readonly sole?: KeysByAlgorithm;
}

/** jwks-rsa, loaded by Node itself: see {@link requireFromHost} (jose 6 is ESM-only). */
const jwksRsa = requireFromHost<typeof JwksRsa>('jwks-rsa');

const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_ALGORITHM_OF_CURVE: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** While no usable key set can be had, a request asks the zone for one at most this often. */
const JWKS_RETRY_FLOOR_MS = JWKS_COOLDOWN_MS / 30;

/**
 * The zone's signing keys. jwks-rsa retrieves and imports them, through our own fetch (absolute
 * deadline, body cap, no redirects), with its cache and rate limiter off because their semantics
 * are wrong for us (catalogue J8): here the whole set is cached for {@link CACHE_MAX_AGE_MS}, an
 * unknown `kid` triggers at most one refetch per {@link JWKS_COOLDOWN_MS} whether it succeeds or
 * fails (E21, E22), and every JWK is checked beyond what jwks-rsa checks (E12–E16, B19).
 */
@Injectable()
export class JwksKeyStore {
  private readonly keySet: RefreshingValue<KeySet>;

  constructor(
    private readonly zone: ZoneMetadataService,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
  ) {
    this.keySet = new RefreshingValue(() => this.fetchKeySet(), () => clock.now());
  }

  /**
   * The key to verify a token with `kid` and `alg`: synchronously while the zone's metadata and key
   * set are fresh and hold the kid (every request between two fetches), else a promise. Throws (or
   * rejects with) {@link InvalidTokenException} when the zone has no usable key for it,
   * {@link ZoneUnavailableException} when the keys cannot be had.
   */
  keyFor(kid: string | undefined, alg: SupportedAlgorithm): VerificationKey | Promise<VerificationKey> {
    const known = this.freshSet();
    const keys = known === undefined ? undefined : this.lookup(known, kid);
    // The common case answers synchronously: the metadata and key set are fresh and know the kid.
    return keys === undefined ? this.fetchKeyFor(kid, alg) : keyOfAlgorithm(keys, alg);
  }

  /** {@link keyFor} when the key set must be fetched, refreshed or searched again for an unknown kid. */
  private async fetchKeyFor(kid: string | undefined, alg: SupportedAlgorithm): Promise<VerificationKey> {
    let set = await this.currentSet();
    let keys = this.lookup(set, kid);
    if (keys === undefined && this.clock.now() - this.keySet.attemptedAt >= JWKS_COOLDOWN_MS) {
      // An unknown kid may mean the zone rotated keys: refetch, at most once per cooldown.
      set = await this.loadOrUnavailable();
      keys = this.lookup(set, kid);
    }
    if (keys === undefined) throw new InvalidTokenException('key_not_found');
    return keyOfAlgorithm(keys, alg);
  }

  /**
   * The key set {@link currentSet} would answer with at once, without a promise: the zone's
   * metadata and its key set both younger than the cache age, for the same `jwks_uri`.
   */
  private freshSet(): KeySet | undefined {
    const metadata = this.zone.fresh();
    const last = this.keySet.last;
    if (metadata === undefined || last === undefined || last.value.jwksUri !== metadata.jwksUri) return undefined;
    return this.clock.now() - last.loadedAt < CACHE_MAX_AGE_MS ? last.value : undefined;
  }

  /**
   * Loads the key set now (or joins the load under way) and counts the keys usable for
   * verification with the configured algorithms: the boot check's question.
   * @throws ZoneFetchError when the key set cannot be had.
   */
  async usableKeyCount(): Promise<number> {
    const set = this.keySet.last?.value ?? (await this.keySet.load());
    return countUsable(set);
  }

  /** When the keys in use were fetched (ms since the epoch), or undefined before the first fetch. */
  get keysFetchedAt(): number | undefined {
    return this.keySet.last?.loadedAt;
  }

  /**
   * True while `key` is still the zone's key for its `kid` in a key set younger than the cache age:
   * lets the verified-token cache drop entries when keys rotate or the set must be refreshed (E20).
   */
  isCurrent(key: VerificationKey, now: number): boolean {
    const last = this.keySet.last;
    if (!last || now - last.loadedAt >= CACHE_MAX_AGE_MS) return false;
    return this.lookup(last.value, key.kid)?.get(key.alg) === key;
  }

  private lookup(set: KeySet, kid: string | undefined): KeysByAlgorithm | undefined {
    return kid === undefined ? set.sole : set.byKid.get(kid);
  }

  private async currentSet(): Promise<KeySet> {
    const metadata = await this.zone.get();
    const last = this.keySet.last;
    const age = last ? this.clock.now() - last.loadedAt : Infinity;
    if (last && last.value.jwksUri === metadata.jwksUri && age < CACHE_MAX_AGE_MS) return last.value;
    if (last && last.value.jwksUri === metadata.jwksUri && age < CACHE_MAX_AGE_MS + STALE_IF_ERROR_MS) {
      // Old keys: refresh, but while the zone fails keep using them for a bounded time (E23).
      if (this.clock.now() - this.keySet.attemptedAt < JWKS_COOLDOWN_MS) return last.value;
      try {
        return await this.keySet.load();
      } catch {
        this.options.logger.warn(`Zone keys could not be refreshed; using keys fetched ${Math.round(age / 1000)} s ago`);
        return last.value;
      }
    }
    if (this.keySet.failing && this.clock.now() - this.keySet.attemptedAt < JWKS_RETRY_FLOOR_MS) {
      throw new ZoneUnavailableException(JWKS_RETRY_FLOOR_MS / 1000);
    }
    // Without usable keys a request asks again after the floor: Retry-After says so, not the unknown-kid cooldown.
    return this.loadOrUnavailable(JWKS_RETRY_FLOOR_MS);
  }

  /** Loads the key set; on failure 503 with `Retry-After` = `retryAfterMs`, when a request may ask the zone again. */
  private async loadOrUnavailable(retryAfterMs = JWKS_COOLDOWN_MS): Promise<KeySet> {
    try {
      return await this.keySet.load();
    } catch {
      throw new ZoneUnavailableException(Math.ceil(retryAfterMs / 1000));
    }
  }

  private async fetchKeySet(): Promise<KeySet> {
    const { jwksUri } = await this.zone.get();
    let raw: unknown[] = [];
    const client = new jwksRsa.JwksClient({
      jwksUri,
      cache: false,
      rateLimit: false,
      fetcher: async (uri: string) => {
        raw = this.checkShape(await fetchZoneJson(this.options.fetch, uri));
        // jwks-rsa labels each key it imports with the JWK's kid and silently skips keys it cannot
        // import: label them by position instead, so keys that share a kid (or have none) are never
        // mistaken for one another.
        return { keys: raw.map((jwk, index) => ({ ...(jwk as object), kid: positionLabel(index) })) };
      },
    });
    let imported: JwksRsa.SigningKey[];
    try {
      imported = await client.getSigningKeys();
    } catch (error) {
      // jwks-rsa refuses a set without (signing) keys; for us that is a valid, empty set (E8).
      if (error instanceof ZoneFetchError) {
        this.options.logger.warn(`Zone keys unavailable: ${logSafe(error.message, LOG_MESSAGE_MAX_LENGTH)}`);
        throw error;
      }
      imported = [];
    }
    return this.buildKeySet(jwksUri, raw, imported);
  }

  /** E6/E7: anything but `{ keys: [objects] }` is a broken answer, not an empty key set. */
  private checkShape(body: unknown): unknown[] {
    const keys = (body as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'object' || k === null || Array.isArray(k))) {
      throw new ZoneFetchError('the zone key set is not a JSON Web Key Set');
    }
    return keys;
  }

  /**
   * Sets aside every JWK that is unusable (E12–E15, B19), then groups the usable ones by `kid` and
   * algorithm: a kid is ambiguous only for an algorithm that several usable keys offer (E16), so an
   * encryption key or a key of another type sharing a signing key's kid changes nothing (M17;
   * RFC 7517 §4.5 allows such kids).
   */
  private buildKeySet(jwksUri: string, raw: unknown[], imported: JwksRsa.SigningKey[]): KeySet {
    const importedAt = new Map(imported.map((signingKey) => [signingKey.kid, signingKey]));
    const byKid = new Map<string, Map<string, VerificationKey | 'ambiguous'>>();
    let sole: KeysByAlgorithm | undefined;
    raw.forEach((entry, index) => {
      const jwk = entry as Record<string, unknown>;
      const kid = typeof jwk.kid === 'string' && jwk.kid !== '' ? jwk.kid : undefined;
      const signingKey = importedAt.get(positionLabel(index));
      const problem = this.unusableBecause(jwk);
      const keys = problem === undefined && signingKey ? this.toVerificationKeys(jwk, signingKey, kid) : undefined;
      if (!keys) {
        this.options.logger.warn(
          `Zone key ${kid === undefined ? '(no kid)' : logSafe(kid)} is not used for verification: ${problem ?? 'it could not be imported'}`,
        );
      }
      if (raw.length === 1) sole = new Map((keys ?? []).map((key) => [key.alg, key]));
      if (kid === undefined) return;
      let byAlgorithm = byKid.get(kid);
      if (byAlgorithm === undefined) {
        byAlgorithm = new Map();
        byKid.set(kid, byAlgorithm);
      }
      for (const key of keys ?? []) {
        const before = byAlgorithm.get(key.alg);
        if (before === undefined) {
          byAlgorithm.set(key.alg, key);
        } else if (before !== 'ambiguous') {
          byAlgorithm.set(key.alg, 'ambiguous');
          this.options.logger.warn(`Zone key set holds several ${key.alg} keys with kid ${logSafe(kid)}; none of them is used for ${key.alg}`);
        }
      }
    });
    const set = { jwksUri, byKid, sole };
    if (countUsable(set) === 0) this.reportNoUsableKey(jwksUri, raw);
    return set;
  }

  /** A key set nothing verifies with is a configuration error: every token would be refused 401. */
  private reportNoUsableKey(jwksUri: string, raw: unknown[]): void {
    const found = raw.slice(0, 5).map((entry) => {
      const jwk = entry as Record<string, unknown>;
      return `${logSafe(jwk.kid ?? '(no kid)')} ${logSafe(jwk.kty)}${jwk.alg === undefined ? '' : ` ${logSafe(jwk.alg)}`}`;
    });
    this.options.logger.error(
      `Zone ${this.options.issuer} publishes no key usable for verification at ${logSafe(jwksUri)}: expected a key for ${[...this.options.algorithms].join(', ')}, found ${raw.length === 0 ? 'no keys' : `${raw.length} (${found.join('; ')})`}. Every token is refused 401 until the zone publishes one or 'algorithms' allows one`,
    );
  }

  /** The checks jwks-rsa does not make (E12–E15, B19). */
  private unusableBecause(jwk: Record<string, unknown>): string | undefined {
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') return `key type ${logSafe(jwk.kty)} is not supported`;
    if (PRIVATE_MEMBERS.some((member) => member in jwk)) return 'it contains private key material';
    if (jwk.use !== undefined && jwk.use !== 'sig') return 'its use is not sig';
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
      return 'its key_ops do not include verify';
    }
    if (jwk.alg !== undefined && !this.familyOf(jwk).includes(jwk.alg as string)) {
      return `its alg ${logSafe(jwk.alg)} does not fit its key type`;
    }
    return undefined;
  }

  private familyOf(jwk: Record<string, unknown>): string[] {
    if (jwk.kty === 'RSA') return RSA_ALGORITHMS;
    const alg = EC_ALGORITHM_OF_CURVE[jwk.crv as string];
    return alg ? [alg] : [];
  }

  /** One {@link VerificationKey} per algorithm the JWK and the options allow; undefined for a weak key. */
  private toVerificationKeys(
    jwk: Record<string, unknown>,
    signingKey: JwksRsa.SigningKey,
    kid: string | undefined,
  ): VerificationKey[] | undefined {
    const key = createPublicKey(signingKey.getPublicKey());
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
      this.options.logger.warn(`Zone key ${kid === undefined ? '(no kid)' : logSafe(kid)} is an RSA key under ${MIN_RSA_BITS} bits; not used`);
      return undefined;
    }
    const family = typeof jwk.alg === 'string' ? [jwk.alg] : this.familyOf(jwk);
    return family
      .filter((alg) => this.options.algorithms.has(alg as SupportedAlgorithm))
      .map((alg) => ({ kid, alg, key, hash: JWS_HASH[alg]!, verifyWith: verifyOptionsFor(key, alg) }));
  }
}

/**
 * The key of `keys` for `alg`.
 * @throws InvalidTokenException `key_unusable` when the kid names no usable key or several for
 *   `alg` (E16), `algorithm_not_allowed` when its keys are not for `alg`.
 */
function keyOfAlgorithm(keys: KeysByAlgorithm, alg: SupportedAlgorithm): VerificationKey {
  const found = keys.get(alg);
  if (found === undefined) throw new InvalidTokenException(keys.size === 0 ? 'key_unusable' : 'algorithm_not_allowed');
  if (found === 'ambiguous') throw new InvalidTokenException('key_unusable');
  return found;
}

/** Keys usable for some algorithm, ambiguous ones excluded. */
function countUsable(set: KeySet): number {
  const usable = new Set<VerificationKey>();
  for (const byAlgorithm of [...set.byKid.values(), ...(set.sole ? [set.sole] : [])]) {
    for (const key of byAlgorithm.values()) if (key !== 'ambiguous') usable.add(key);
  }
  return new Set([...usable].map((key) => key.key)).size;
}

/** The label a JWK is imported under by jwks-rsa: its position in the set. */
function positionLabel(index: number): string {
  return `#${index}`;
}
