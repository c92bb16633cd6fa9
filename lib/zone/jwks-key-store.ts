import { Inject, Injectable } from '@nestjs/common';
import { createPublicKey, type KeyObject } from 'node:crypto';
import jwksRsa from 'jwks-rsa';
import {
  CACHE_MAX_AGE_MS, JWKS_COOLDOWN_MS, KEYCARD_CLOCK, KEYCARD_OPTIONS, MIN_RSA_BITS,
  STALE_IF_ERROR_MS, type SupportedAlgorithm,
} from '../keycard.constants.js';
import { InvalidTokenException, ZoneUnavailableException } from '../resource-server/keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { Clock } from '../clock.js';
import { RefreshingValue } from './refreshing-value.js';
import { fetchZoneJson, ZoneFetchError } from './zone-fetch.js';
import { ZoneMetadataService } from './zone-metadata.service.js';

/** A zone key ready for verification: imported once per fetch, never per request. */
export interface VerificationKey {
  readonly kid?: string;
  readonly key: KeyObject;
  /** The algorithms this key may verify: its JWK `alg`, or the family of its type and curve. */
  readonly algorithms: ReadonlySet<string>;
}

/** The outcome of one JWKS fetch: usable keys by `kid`, and what was refused and why. */
interface KeySet {
  readonly jwksUri: string;
  readonly byKid: ReadonlyMap<string, VerificationKey | 'ambiguous' | 'unusable'>;
  /** The only key when the set holds exactly one JWK (then a token may omit `kid`, catalogue E17). */
  readonly sole?: VerificationKey;
}

const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_ALGORITHM_OF_CURVE: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

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
   * The key to verify a token with `kid` and `alg`. Throws {@link InvalidTokenException} when the
   * zone has no usable key for it, {@link ZoneUnavailableException} when the keys cannot be had.
   */
  async keyFor(kid: string | undefined, alg: SupportedAlgorithm): Promise<VerificationKey> {
    let set = await this.currentSet();
    let found = this.lookup(set, kid);
    if (found === undefined && this.clock.now() - this.keySet.attemptedAt >= JWKS_COOLDOWN_MS) {
      // An unknown kid may mean the zone rotated keys: refetch, at most once per cooldown.
      set = await this.loadOrUnavailable();
      found = this.lookup(set, kid);
    }
    if (found === undefined) throw new InvalidTokenException('key_not_found');
    if (found === 'ambiguous' || found === 'unusable') throw new InvalidTokenException('key_unusable');
    if (!found.algorithms.has(alg)) throw new InvalidTokenException('algorithm_not_allowed');
    return found;
  }

  /**
   * True while `key` is still the zone's key for its `kid` in a key set younger than the cache age:
   * lets the verified-token cache drop entries when keys rotate or the set must be refreshed (E20).
   */
  isCurrent(key: VerificationKey, now: number): boolean {
    const last = this.keySet.last;
    if (!last || now - last.loadedAt >= CACHE_MAX_AGE_MS) return false;
    return this.lookup(last.value, key.kid) === key;
  }

  private lookup(set: KeySet, kid: string | undefined) {
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
    if (this.keySet.failing && this.clock.now() - this.keySet.attemptedAt < JWKS_COOLDOWN_MS / 30) {
      throw new ZoneUnavailableException(1);
    }
    return this.loadOrUnavailable();
  }

  private async loadOrUnavailable(): Promise<KeySet> {
    try {
      return await this.keySet.load();
    } catch {
      throw new ZoneUnavailableException(Math.ceil(JWKS_COOLDOWN_MS / 1000));
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
        const body = await fetchZoneJson(this.options.fetch, uri);
        raw = this.checkShape(body);
        return body as { keys: unknown[] };
      },
    });
    let imported: jwksRsa.SigningKey[];
    try {
      imported = await client.getSigningKeys();
    } catch (error) {
      // jwks-rsa refuses a set without (signing) keys; for us that is a valid, empty set (E8).
      if (error instanceof ZoneFetchError) {
        this.options.logger.warn(`Zone keys unavailable: ${error.message}`);
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

  private buildKeySet(jwksUri: string, raw: unknown[], imported: jwksRsa.SigningKey[]): KeySet {
    const byKid = new Map<string, VerificationKey | 'ambiguous' | 'unusable'>();
    let sole: VerificationKey | undefined;
    for (const entry of raw) {
      const jwk = entry as Record<string, unknown>;
      const kid = typeof jwk.kid === 'string' && jwk.kid !== '' ? jwk.kid : undefined;
      const signingKey = imported.find((k) => k.kid === kid);
      const problem = this.unusableBecause(jwk);
      const key = problem === undefined && signingKey ? this.toVerificationKey(jwk, signingKey, kid) : undefined;
      if (!key) {
        this.options.logger.warn(
          `Zone key ${kid ?? '(no kid)'} is not used for verification: ${problem ?? 'it could not be imported'}`,
        );
      }
      if (raw.length === 1) sole = key;
      if (kid === undefined) continue;
      if (byKid.has(kid)) {
        byKid.set(kid, 'ambiguous');
        this.options.logger.warn(`Zone key set holds several keys with kid ${kid}; none of them is used`);
      } else {
        byKid.set(kid, key ?? 'unusable');
      }
    }
    return { jwksUri, byKid, sole };
  }

  /** The checks jwks-rsa does not make (E12–E15, B19). */
  private unusableBecause(jwk: Record<string, unknown>): string | undefined {
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') return `key type ${String(jwk.kty)} is not supported`;
    if (PRIVATE_MEMBERS.some((member) => member in jwk)) return 'it contains private key material';
    if (jwk.use !== undefined && jwk.use !== 'sig') return 'its use is not sig';
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
      return 'its key_ops do not include verify';
    }
    if (jwk.alg !== undefined && !this.familyOf(jwk).includes(jwk.alg as string)) {
      return `its alg ${String(jwk.alg)} does not fit its key type`;
    }
    return undefined;
  }

  private familyOf(jwk: Record<string, unknown>): string[] {
    if (jwk.kty === 'RSA') return RSA_ALGORITHMS;
    const alg = EC_ALGORITHM_OF_CURVE[jwk.crv as string];
    return alg ? [alg] : [];
  }

  private toVerificationKey(
    jwk: Record<string, unknown>,
    signingKey: jwksRsa.SigningKey,
    kid: string | undefined,
  ): VerificationKey | undefined {
    const key = createPublicKey(signingKey.getPublicKey());
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
      this.options.logger.warn(`Zone key ${kid ?? '(no kid)'} is an RSA key under ${MIN_RSA_BITS} bits; not used`);
      return undefined;
    }
    const family = typeof jwk.alg === 'string' ? [jwk.alg] : this.familyOf(jwk);
    const algorithms = new Set(family.filter((alg) => this.options.algorithms.has(alg as SupportedAlgorithm)));
    return { kid, key, algorithms };
  }
}
