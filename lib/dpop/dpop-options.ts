import { SUPPORTED_ALGORITHMS, type SupportedAlgorithm } from '../keycard.constants.js';
import type { TokenCipherKey } from '../redis/token-cipher.js';
import type { DpopReplayStore } from './dpop-replay-store.js';

/**
 * DPoP (RFC 9449) on the resource server: the `dpop` option of `KeycardModule.forRoot()`.
 * `dpop: 'allowed'` is short for `{ mode: 'allowed' }`.
 * @publicApi
 */
export interface DpopModuleOptions {
  /**
   * `allowed`: both `Bearer` and `DPoP` schemes (a DPoP-bound token only with a proof);
   * `required`: only the `DPoP` scheme, a Bearer request is answered as an unsupported scheme.
   */
  mode: 'allowed' | 'required';
  /** JWS algorithms of proofs, asymmetric only (RFC 9449 §11.6). @default ['ES256', 'PS256'] */
  algorithms?: SupportedAlgorithm[];
  /**
   * How far a proof's `iat` may be from now, in seconds, either way (RFC 9449 §11.1; the MCP DPoP
   * profile allows at most ±300). @default 60
   */
  proofWindowSeconds?: number;
  /** Where proof `jti`s are remembered (RFC 9449 §11.1). @default one in memory per instance */
  replayStore?: DpopReplayStore;
  /**
   * When a shared `replayStore` fails: `local` keeps verifying proofs and remembers them in memory
   * on this instance (the MCP profile makes `jti` tracking a MAY; one log line), `refuse` answers 503.
   * @default 'local'
   */
  replayStoreUnavailable?: 'local' | 'refuse';
  /**
   * Server nonces (RFC 9449 §9): every proof must carry a `nonce` this API issued, an AES-256-GCM
   * sealed timestamp under these keys (the first seals, all open), so any instance that holds the
   * keys accepts any instance's nonce without shared state (catalogue Q38).
   */
  nonce?: { keys: readonly TokenCipherKey[]; lifetimeSeconds?: number };
}

/** {@link DpopModuleOptions} after validation. */
export interface DpopOptions {
  readonly mode: 'allowed' | 'required';
  readonly algorithms: ReadonlySet<string>;
  /** The `algs` challenge parameter: the algorithms, space-joined (RFC 9449 §7.1). */
  readonly algs: string;
  readonly proofWindowSeconds: number;
  readonly replayStore?: DpopReplayStore;
  readonly replayStoreUnavailable: 'local' | 'refuse';
  readonly nonce?: { readonly keys: readonly TokenCipherKey[]; readonly lifetimeSeconds: number };
}

const MAX_PROOF_WINDOW_SECONDS = 300;

function fail(problem: string): never {
  throw new TypeError(`KeycardModule: 'dpop' ${problem}`);
}

/**
 * Validates the `dpop` option. @returns `undefined` when DPoP is off (the default: mode H-0).
 * @throws TypeError naming the problem, which fails the bootstrap.
 */
export function normaliseDpopOptions(raw: unknown): DpopOptions | undefined {
  if (raw === undefined || raw === false) return undefined;
  const input = (typeof raw === 'string' ? { mode: raw } : raw) as Partial<DpopModuleOptions>;
  if (typeof input !== 'object' || input === null) fail("must be 'allowed', 'required' or an options object");
  if (input.mode !== 'allowed' && input.mode !== 'required') fail("mode must be 'allowed' or 'required'");
  const algorithms = input.algorithms ?? ['ES256', 'PS256'];
  if (!Array.isArray(algorithms) || algorithms.length === 0 || !algorithms.every((a) => (SUPPORTED_ALGORITHMS as readonly string[]).includes(a))) {
    fail(`algorithms must be a non-empty list of ${SUPPORTED_ALGORITHMS.join(', ')}`);
  }
  const window = input.proofWindowSeconds ?? 60;
  if (!Number.isInteger(window) || window < 1 || window > MAX_PROOF_WINDOW_SECONDS) fail(`proofWindowSeconds must be an integer from 1 to ${MAX_PROOF_WINDOW_SECONDS}`);
  const store = input.replayStore;
  if (store !== undefined && typeof (store as Partial<DpopReplayStore>)?.remember !== 'function') fail('replayStore must have a remember method');
  const unavailable = input.replayStoreUnavailable ?? 'local';
  if (unavailable !== 'local' && unavailable !== 'refuse') fail("replayStoreUnavailable must be 'local' or 'refuse'");
  return {
    mode: input.mode,
    algorithms: new Set(algorithms),
    algs: [...new Set(algorithms)].join(' '),
    proofWindowSeconds: window,
    replayStore: store,
    replayStoreUnavailable: unavailable,
    nonce: normaliseNonce(input.nonce),
  };
}

function normaliseNonce(raw: DpopModuleOptions['nonce']): DpopOptions['nonce'] {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'object' || raw === null || !Array.isArray(raw.keys) || raw.keys.length === 0) fail('nonce.keys must be a non-empty list of AES-256 keys');
  const lifetime = raw.lifetimeSeconds ?? 60;
  if (!Number.isInteger(lifetime) || lifetime < 2 || lifetime > 3600) fail('nonce.lifetimeSeconds must be an integer from 2 to 3600');
  return { keys: raw.keys, lifetimeSeconds: lifetime };
}

