import { request as httpRequest } from 'node:http';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { USER_AGENT } from '../keycard.constants.js';
import { BodyTooLargeError, readCappedText } from '../zone/zone-fetch.js';
import { TokenExchangeError } from './token-exchange.error.js';

/**
 * Where workload identity gets the platform's identity token (the `client_assertion`). `read()` is
 * called for every token request, so a rotated token is picked up at once; a source may keep a
 * token only until its own `exp`. The token is never logged and never part of an error message.
 * @publicApi
 */
export interface WorkloadTokenSource {
  /** Where the token comes from, for error messages and `toJSON()` (never the token). */
  readonly description: string;
  /** A current identity token. @throws TokenExchangeError `config` or `unavailable`, before any call to the zone. */
  read(): Promise<string>;
}

/** Largest identity token accepted from any source, in bytes (catalogue I6). */
export const MAX_WORKLOAD_TOKEN_BYTES = 64 * 1024;
/** Absolute deadline of a metadata-server or socket request, in ms. */
const SOURCE_TIMEOUT_MS = 5_000;

/** The token as sent: trimmed, non-empty, bounded (catalogue I5, I6). */
function checkedToken(value: unknown, description: string): string {
  if (typeof value !== 'string') throw new TokenExchangeError(`${description} gave no token`, 'config');
  const token = value.trim();
  if (token === '') throw new TokenExchangeError(`${description} gave an empty token`, 'config');
  if (Buffer.byteLength(token) > MAX_WORKLOAD_TOKEN_BYTES) {
    throw new TokenExchangeError(`${description} gave a token larger than ${MAX_WORKLOAD_TOKEN_BYTES} bytes`, 'config');
  }
  return token;
}

/** Seconds the API asks its callers to wait when the workload token file cannot give a token (I5, I6). */
const TOKEN_FILE_RETRY_AFTER_SECONDS = 5;

/**
 * The workload token file is missing, unreadable, empty or whitespace-only, or larger than 64 KiB
 * (catalogue I5, I6). A `config` error thrown before any request to the zone, but usually a
 * transient one: the kubelet has not mounted the projected token yet, or is rotating it. So the
 * module's exception filter answers it **503** with `Retry-After: 5` (`retryAfterSeconds` is 5) and
 * an error-level log line naming the file, where other configuration errors answer 500 (decision
 * Q8); `retryable` is true. The message names the file, never its contents. A path that is not a
 * regular file (a directory, a device, a FIFO) is a plain `TokenExchangeError` `config`: a wrong
 * path, answered 500.
 * @publicApi
 */
export class WorkloadTokenFileError extends TokenExchangeError {
  constructor(
    /** The token file's path. */
    readonly path: string,
    /** What is wrong with it, appended to the message (`is empty`). */
    problem: string,
  ) {
    super(`workload token file ${path} ${problem}`, 'config', undefined, undefined, TOKEN_FILE_RETRY_AFTER_SECONDS);
    this.name = 'WorkloadTokenFileError';
  }

  /** True: the platform writes the file again (mounts it, rotates it) without any change on this side. */
  override get retryable(): boolean {
    return true;
  }
}

/**
 * A token file the platform writes and rotates: a Kubernetes projected service account token, an
 * EKS pod identity or web identity token, AKS's `AZURE_FEDERATED_TOKEN_FILE`. Re-opened by path on
 * every read (the kubelet swaps a symlink, catalogue I4); a missing, unreadable, empty or oversized
 * file fails closed before the network with a {@link WorkloadTokenFileError} (I5, I6). The path is
 * opened without waiting and the opened file is checked, so one that is not a regular file (a
 * directory, a device, a FIFO, also one swapped in just before the open) is a `config` error at once.
 * @publicApi
 */
export function tokenFileSource(path: string): WorkloadTokenSource {
  if (typeof path !== 'string' || path === '') throw new TypeError("tokenFileSource: 'path' is required");
  const description = `workload token file ${path}`;
  return {
    description,
    async read() {
      let contents: string;
      try {
        contents = await readCapped(path, description);
      } catch (error) {
        if (error instanceof TokenExchangeError) throw error;
        throw new WorkloadTokenFileError(path, `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      if (contents.trim() === '') throw new WorkloadTokenFileError(path, 'is empty');
      return checkedToken(contents, description);
    },
  };
}

/**
 * The file's text, read to at most {@link MAX_WORKLOAD_TOKEN_BYTES} bytes. The path is opened
 * without waiting (`O_NONBLOCK`: a FIFO's open would wait for a writer, holding a libuv thread) and
 * the opened handle, not the path, is checked: a path swapped between a check and the open cannot
 * slip through. A device (`/dev/zero` says size 0 and never ends), a FIFO or a directory is a wrong
 * path, not a token; a file that grows past the cap while it is read is refused, never read whole.
 */
async function readCapped(path: string, description: string): Promise<string> {
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await file.stat();
    if (!info.isFile()) throw new TokenExchangeError(`${description} is not a regular file`, 'config');
    if (info.size > MAX_WORKLOAD_TOKEN_BYTES) throw new WorkloadTokenFileError(path, `is larger than ${MAX_WORKLOAD_TOKEN_BYTES} bytes`);
    const buffer = Buffer.alloc(MAX_WORKLOAD_TOKEN_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_WORKLOAD_TOKEN_BYTES) throw new WorkloadTokenFileError(path, `is larger than ${MAX_WORKLOAD_TOKEN_BYTES} bytes`);
    return buffer.toString('utf8', 0, length);
  } finally {
    await file.close();
  }
}

/** Options of {@link gcpMetadataSource}. @publicApi */
export interface GcpMetadataSourceOptions {
  /** `aud` of the identity token: what the zone expects (often the zone URL). */
  audience: string;
  /**
   * Base URL of the metadata server.
   * @default `http://${GCE_METADATA_HOST}` when that variable is set, else `http://metadata.google.internal`
   */
  baseUrl?: string;
}

/**
 * A Google-signed identity token from the GCP metadata server (GKE workload identity, Cloud Run,
 * Compute Engine): `GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=…`
 * with `Metadata-Flavor: Google`. An answer without `Metadata-Flavor: Google` is not from the
 * metadata server and is refused. Redirects are not followed; a fresh token per read.
 * @publicApi
 */
export function gcpMetadataSource(options: GcpMetadataSourceOptions): WorkloadTokenSource {
  if (typeof options?.audience !== 'string' || options.audience === '') throw new TypeError("gcpMetadataSource: 'audience' is required");
  const base = options.baseUrl ?? `http://${process.env.GCE_METADATA_HOST || 'metadata.google.internal'}`;
  if (!URL.canParse(base)) throw new TypeError(`gcpMetadataSource: 'baseUrl' is not an absolute URL: ${base}`);
  const url = new URL('/computeMetadata/v1/instance/service-accounts/default/identity', base);
  url.searchParams.set('audience', options.audience);
  url.searchParams.set('format', 'full');
  const description = `GCP metadata server ${url.origin}`;
  return {
    description,
    async read() {
      let response: Response;
      try {
        response = await fetch(url, {
          redirect: 'manual',
          signal: AbortSignal.timeout(SOURCE_TIMEOUT_MS),
          headers: { 'metadata-flavor': 'Google', 'user-agent': USER_AGENT },
        });
      } catch {
        throw new TokenExchangeError(`${description} could not be reached`, 'unavailable');
      }
      if (response.status !== 200 || response.headers.get('metadata-flavor') !== 'Google') {
        await response.body?.cancel().catch(() => undefined);
        const kind = response.status >= 500 || response.status === 429 ? 'unavailable' : 'config';
        throw new TokenExchangeError(`${description} answered HTTP ${response.status}${response.headers.get('metadata-flavor') === 'Google' ? '' : ' without Metadata-Flavor: Google'}`, kind);
      }
      try {
        return checkedToken(await readCappedText(response, MAX_WORKLOAD_TOKEN_BYTES), description);
      } catch (error) {
        if (error instanceof TokenExchangeError) throw error;
        if (error instanceof BodyTooLargeError) throw new TokenExchangeError(`${description} gave a token larger than ${MAX_WORKLOAD_TOKEN_BYTES} bytes`, 'config');
        throw new TokenExchangeError(`${description} answer was cut off`, 'unavailable');
      }
    },
  };
}

/** Options of {@link flySocketSource}. @publicApi */
export interface FlySocketSourceOptions {
  /** `aud` of the OIDC token: what the zone expects (often the zone URL). */
  audience: string;
  /** Path of the machine API's Unix socket. @default '/.fly/api' */
  socketPath?: string;
}

/**
 * An OIDC token from the Fly.io machine API over its Unix socket: `POST /v1/tokens/oidc` with
 * `{"aud": …}` on `/.fly/api`. A fresh token per read.
 * @publicApi
 */
export function flySocketSource(options: FlySocketSourceOptions): WorkloadTokenSource {
  if (typeof options?.audience !== 'string' || options.audience === '') throw new TypeError("flySocketSource: 'audience' is required");
  const socketPath = options.socketPath ?? '/.fly/api';
  const description = `Fly machine API socket ${socketPath}`;
  const body = JSON.stringify({ aud: options.audience });
  return {
    description,
    read: () =>
      new Promise<string>((resolve, reject) => {
        const fail = (message: string, kind: 'config' | 'unavailable') => reject(new TokenExchangeError(`${description} ${message}`, kind));
        const req = httpRequest(
          {
            socketPath,
            method: 'POST',
            path: '/v1/tokens/oidc',
            headers: { host: 'localhost', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': USER_AGENT },
            timeout: SOURCE_TIMEOUT_MS,
          },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (chunk: Buffer) => {
              size += chunk.length;
              if (size > MAX_WORKLOAD_TOKEN_BYTES) {
                res.destroy();
                fail(`gave a token larger than ${MAX_WORKLOAD_TOKEN_BYTES} bytes`, 'config');
              } else {
                chunks.push(chunk);
              }
            });
            res.on('error', () => fail('answer was cut off', 'unavailable'));
            res.on('end', () => {
              const status = res.statusCode ?? 0;
              if (status !== 200) return fail(`answered HTTP ${status}`, status >= 500 ? 'unavailable' : 'config');
              try {
                resolve(checkedToken(Buffer.concat(chunks).toString('utf8'), description));
              } catch (error) {
                reject(error as Error);
              }
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (error: NodeJS.ErrnoException) => fail(`could not be reached (${error.code ?? error.message})`, 'unavailable'));
        req.end(body);
      }),
  };
}

/**
 * A token from the application's own async function (a secrets manager, a sidecar, another
 * platform). Called for every token request; whatever it throws becomes a `config` error without
 * its message (which might hold the token).
 * @publicApi
 */
export function functionSource(read: () => Promise<string> | string, description = 'workload token function'): WorkloadTokenSource {
  if (typeof read !== 'function') throw new TypeError('functionSource: expected a function');
  return {
    description,
    async read() {
      let value: unknown;
      try {
        value = await read();
      } catch (error) {
        if (error instanceof TokenExchangeError) throw error;
        throw new TokenExchangeError(`${description} failed`, 'config');
      }
      return checkedToken(value, description);
    },
  };
}
