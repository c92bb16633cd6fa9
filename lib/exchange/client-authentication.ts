import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { JWS_HASH, signJws } from '../jws-crypto.js';
import { beforeAbort, DeadlineExceededError } from '../within-deadline.js';
import {
  flySocketSource, functionSource, gcpMetadataSource, tokenFileSource,
  type FlySocketSourceOptions, type GcpMetadataSourceOptions, type WorkloadTokenSource,
} from './workload-token-source.js';

/** What a client authentication adds to a token request. */
export interface ClientAuthenticationParts {
  /** Form members (`client_id`, `client_assertion`, …). */
  readonly form: Record<string, string>;
  /** Request headers (`Authorization`). */
  readonly headers: Record<string, string>;
}

/**
 * How this service proves its identity to the zone's token endpoint (RFC 6749 §2.3, RFC 7523).
 * @publicApi
 */
export interface ClientAuthentication {
  /**
   * The parts for one request to `tokenEndpoint`. Called once per request: assertions are fresh.
   * Awaited within the request's 5 s deadline (past it: `TokenExchangeError` `unavailable`). A
   * `TokenExchangeError` it throws is passed on; anything else becomes one of kind `config`,
   * without its message (it may hold what was read).
   */
  authenticate(tokenEndpoint: string): Promise<ClientAuthenticationParts>;
  /**
   * Called after the zone answered `invalid_client`: true when new credentials are available and
   * one retry is worth it (a rotated workload token file, catalogue I7). Awaited within the same
   * deadline; a failure counts as `false`.
   * @param refused the parts of the request the zone refused (another request may have read newer
   *   credentials since).
   */
  credentialsChanged?(refused?: ClientAuthenticationParts): Promise<boolean>;
}

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** application/x-www-form-urlencoded encoding of one value (RFC 6749 Appendix B). */
function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/**
 * A client id and secret. `client_secret_basic` (default) form-urlencodes both parts before base64,
 * as RFC 6749 §2.3.1 requires (catalogue I2); `client_secret_post` sends them in the body.
 * @publicApi
 */
export class ClientSecret implements ClientAuthentication {
  readonly #secret: string;

  constructor(
    readonly clientId: string,
    secret: string,
    readonly options: { method?: 'client_secret_basic' | 'client_secret_post' } = {},
  ) {
    if (typeof clientId !== 'string' || clientId === '') throw new TypeError("ClientSecret: 'clientId' is required");
    if (typeof secret !== 'string' || secret === '') throw new TypeError("ClientSecret: 'secret' is required");
    this.#secret = secret;
  }

  async authenticate(): Promise<ClientAuthenticationParts> {
    if (this.options.method === 'client_secret_post') {
      return { form: { client_id: this.clientId, client_secret: this.#secret }, headers: {} };
    }
    const credentials = Buffer.from(`${formEncode(this.clientId)}:${formEncode(this.#secret)}`).toString('base64');
    return { form: {}, headers: { authorization: `Basic ${credentials}` } };
  }

  /** Never prints the secret (e.g. in a logged options object). */
  toJSON() {
    return { clientId: this.clientId, method: this.options.method ?? 'client_secret_basic' };
  }
}


/**
 * `private_key_jwt` (RFC 7523 §2.2): a short-lived assertion signed with this service's key,
 * `iss` = `sub` = the client id, `aud` = the token endpoint, a unique `jti` per request.
 * @publicApi
 */
export class PrivateKeyJwt implements ClientAuthentication {
  readonly clientId: string;
  readonly #key: KeyObject;
  readonly #keyId?: string;
  readonly #alg: string;
  readonly #lifetimeSeconds: number;

  constructor(options: { clientId: string; privateKey: KeyObject | string; keyId?: string; alg?: string; lifetimeSeconds?: number }) {
    if (typeof options?.clientId !== 'string' || options.clientId === '') throw new TypeError("PrivateKeyJwt: 'clientId' is required");
    const alg = options.alg ?? 'RS256';
    if (!JWS_HASH[alg]) throw new TypeError(`PrivateKeyJwt: 'alg' ${alg} is not an asymmetric JWS algorithm`);
    this.clientId = options.clientId;
    this.#key = typeof options.privateKey === 'string' ? createPrivateKey(options.privateKey) : options.privateKey;
    if (this.#key.type !== 'private') throw new TypeError("PrivateKeyJwt: 'privateKey' must be a private key");
    this.#keyId = options.keyId;
    this.#alg = alg;
    this.#lifetimeSeconds = options.lifetimeSeconds ?? 60;
  }

  async authenticate(tokenEndpoint: string): Promise<ClientAuthenticationParts> {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: this.#alg, typ: 'JWT', ...(this.#keyId ? { kid: this.#keyId } : {}) };
    const claims = { iss: this.clientId, sub: this.clientId, aud: tokenEndpoint, iat: now, exp: now + this.#lifetimeSeconds, jti: randomUUID() };
    const assertion = signJws(header, claims, this.#key, this.#alg);
    return {
      form: { client_id: this.clientId, client_assertion_type: JWT_BEARER, client_assertion: assertion },
      headers: {},
    };
  }

  toJSON() {
    return { clientId: this.clientId, method: 'private_key_jwt', alg: this.#alg };
  }
}

/** Env variables naming the workload token file, in the order `WorkloadIdentity.eks()` reads them. */
export const EKS_TOKEN_FILE_VARIABLES = [
  'KEYCARD_EKS_WORKLOAD_IDENTITY_TOKEN_FILE',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
] as const;

/** Where the kubelet projects the pod's service account token by default. */
export const KUBERNETES_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Options of `new WorkloadIdentity()`: a token file, or any {@link WorkloadTokenSource}. @publicApi */
export type WorkloadIdentityOptions =
  | { tokenFile: string; clientId?: string }
  | { source: WorkloadTokenSource | (() => Promise<string> | string); clientId?: string };

/**
 * Workload identity: the platform's identity token sent as a jwt-bearer `client_assertion`
 * (RFC 7523 §2.2), taken fresh from its source for every token request (catalogue I3, I4, V4):
 * a projected token file (Kubernetes, EKS, AKS), the GCP metadata server, the Fly machine API
 * socket, or the application's own async function. The token is never logged.
 *
 * @example
 * ```ts
 * clientCredentials: WorkloadIdentity.gcp({ audience: 'https://abc.keycard.cloud' })
 * ```
 * @publicApi
 */
export class WorkloadIdentity implements ClientAuthentication {
  /** The token file, for file sources. */
  readonly tokenFile?: string;
  readonly clientId?: string;
  readonly source: WorkloadTokenSource;
  #lastAssertion?: string;

  constructor(options: WorkloadIdentityOptions) {
    if (options && 'source' in options && options.source !== undefined) {
      this.source = typeof options.source === 'function' ? functionSource(options.source) : options.source;
      if (typeof this.source?.read !== 'function') throw new TypeError("WorkloadIdentity: 'source' must be a function or a WorkloadTokenSource");
    } else {
      const tokenFile = (options as { tokenFile?: unknown } | undefined)?.tokenFile;
      if (typeof tokenFile !== 'string' || tokenFile === '') throw new TypeError("WorkloadIdentity: 'tokenFile' or 'source' is required");
      this.tokenFile = tokenFile;
      this.source = tokenFileSource(tokenFile);
    }
    this.clientId = options.clientId;
  }

  /** Workload identity on EKS: the token file named by the first of `KEYCARD_EKS_WORKLOAD_IDENTITY_TOKEN_FILE`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, `AWS_WEB_IDENTITY_TOKEN_FILE` that is set. */
  static eks(options: { clientId?: string; env?: NodeJS.ProcessEnv } = {}): WorkloadIdentity {
    const env = options.env ?? process.env;
    const variable = EKS_TOKEN_FILE_VARIABLES.find((name) => env[name]);
    if (!variable) throw new TypeError(`WorkloadIdentity.eks(): none of ${EKS_TOKEN_FILE_VARIABLES.join(', ')} is set`);
    return new WorkloadIdentity({ tokenFile: env[variable]!, clientId: options.clientId });
  }

  /** A Kubernetes projected service account token. @default tokenFile `/var/run/secrets/kubernetes.io/serviceaccount/token` */
  static kubernetes(options: { tokenFile?: string; clientId?: string } = {}): WorkloadIdentity {
    return new WorkloadIdentity({ tokenFile: options.tokenFile ?? KUBERNETES_TOKEN_FILE, clientId: options.clientId });
  }

  /** AKS workload identity: the file named by `AZURE_FEDERATED_TOKEN_FILE`. */
  static aks(options: { clientId?: string; env?: NodeJS.ProcessEnv } = {}): WorkloadIdentity {
    const tokenFile = (options.env ?? process.env).AZURE_FEDERATED_TOKEN_FILE;
    if (!tokenFile) throw new TypeError('WorkloadIdentity.aks(): AZURE_FEDERATED_TOKEN_FILE is not set');
    return new WorkloadIdentity({ tokenFile, clientId: options.clientId });
  }

  /** GKE, Cloud Run, Compute Engine: an identity token from the metadata server (see {@link gcpMetadataSource}). */
  static gcp(options: GcpMetadataSourceOptions & { clientId?: string }): WorkloadIdentity {
    return new WorkloadIdentity({ source: gcpMetadataSource(options), clientId: options.clientId });
  }

  /** Fly.io: an OIDC token from the machine API socket (see {@link flySocketSource}). */
  static fly(options: FlySocketSourceOptions & { clientId?: string }): WorkloadIdentity {
    return new WorkloadIdentity({ source: flySocketSource(options), clientId: options.clientId });
  }

  async authenticate(): Promise<ClientAuthenticationParts> {
    const assertion = await this.source.read();
    this.#lastAssertion = assertion;
    return {
      form: { ...(this.clientId ? { client_id: this.clientId } : {}), client_assertion_type: JWT_BEARER, client_assertion: assertion },
      headers: {},
    };
  }

  async credentialsChanged(refused?: ClientAuthenticationParts): Promise<boolean> {
    // Compared with what the refused request sent, not with the last read: a concurrent request may
    // already have read the rotated token, which the refused one never tried (I7).
    const sent = refused?.form.client_assertion ?? this.#lastAssertion;
    try {
      return (await this.source.read()) !== sent;
    } catch {
      return false;
    }
  }

  toJSON() {
    return { source: this.source.description, clientId: this.clientId, method: 'workload_identity' };
  }
}

/**
 * Whether `auth`'s credentials rotated since `refused` was sent (I7: a zone answering
 * `invalid_client` to a workload token rotated meanwhile gets one retry with the new one), asked
 * before `deadline` aborts, as the source is read again. A source that cannot say is taken as
 * unchanged (the refusal stands); running out of time is not: it rejects with
 * {@link DeadlineExceededError}, which each client answers in its own terms.
 */
export async function credentialsRotated(auth: ClientAuthentication, refused: ClientAuthenticationParts, deadline: AbortSignal): Promise<boolean> {
  if (auth.credentialsChanged === undefined) return false;
  try {
    return await beforeAbort(auth.credentialsChanged(refused), deadline);
  } catch (error) {
    if (error instanceof DeadlineExceededError) throw error;
    return false;
  }
}

/** Normalises the `clientCredentials` option: a plain `{ clientId, clientSecret }` is a {@link ClientSecret}. */
export function toClientAuthentication(value: unknown): ClientAuthentication | undefined {
  if (value === undefined) return undefined;
  if (value instanceof ClientSecret || value instanceof PrivateKeyJwt || value instanceof WorkloadIdentity) return value;
  const plain = value as { clientId?: unknown; clientSecret?: unknown; authenticate?: unknown };
  if (typeof plain === 'object' && plain !== null && typeof plain.authenticate === 'function') {
    return value as ClientAuthentication;
  }
  if (typeof plain === 'object' && plain !== null && typeof plain.clientId === 'string' && typeof plain.clientSecret === 'string') {
    return new ClientSecret(plain.clientId, plain.clientSecret);
  }
  throw new TypeError(
    "KeycardModule: 'clientCredentials' must be { clientId, clientSecret } or a ClientSecret, PrivateKeyJwt or WorkloadIdentity instance",
  );
}
