import { AS_WELL_KNOWN, FETCH_TIMEOUT_MS, MAX_BODY_BYTES, OIDC_WELL_KNOWN, USER_AGENT } from '../keycard.constants.js';
import { logSafe } from '../logging/log-safe.js';
import type { FetchLike } from '../interfaces/keycard-module-options.interface.js';

/**
 * Why a call to the zone failed. The message is for operators: it names the URL (configuration,
 * never a token) and the HTTP status or network failure.
 */
export class ZoneFetchError extends Error {
  constructor(
    message: string,
    /** HTTP status when the zone answered, for callers that fall back on 404. */
    readonly status?: number,
    /**
     * True when the zone answered and the answer shows a configuration error (its issuer is not
     * `zoneUrl`, it has no metadata at all): waiting will not fix it, someone has to.
     */
    readonly configuration = false,
  ) {
    super(message);
    this.name = 'ZoneFetchError';
  }
}

/**
 * GETs a JSON document from the zone with the guarantees jwks-rsa and plain `fetch` lack
 * (catalogue E4, E5, E10, E11, F11): an absolute deadline covering headers and body, no redirects,
 * a body cap, `200` and a JSON content type required.
 */
export async function fetchZoneJson(fetchFn: FetchLike, url: string): Promise<unknown> {
  const signal = AbortSignal.timeout(FETCH_TIMEOUT_MS);
  const get = () => fetchFn(url, { method: 'GET', redirect: 'manual', signal, headers: { accept: 'application/json', 'user-agent': USER_AGENT } });
  let response: Response;
  try {
    // A pooled connection the zone closed while idle fails before any answer: a GET is idempotent
    // (RFC 9110 §9.2.2), so it goes once more on a new connection, within the same deadline.
    response = await get().catch((error: unknown) => (!signal.aborted && isResetConnection(error) ? get() : Promise.reject(error)));
  } catch (error) {
    throw new ZoneFetchError(`GET ${logSafe(url)} failed: ${logSafe(describeNetworkError(error, signal))}`);
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new ZoneFetchError(`GET ${logSafe(url)} answered HTTP ${response.status}`, response.status);
  }
  const contentType = response.headers.get('content-type') ?? '';
  if (!/[/+]json\b/i.test(contentType)) {
    await response.body?.cancel().catch(() => undefined);
    throw new ZoneFetchError(`GET ${logSafe(url)} answered ${contentType ? logSafe(contentType) : 'no content type'}, not JSON`);
  }
  const text = await readCapped(response, url, signal);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ZoneFetchError(`GET ${logSafe(url)} answered a body that is not valid JSON`);
  }
}

/** Thrown by {@link readCappedText} when a body exceeds its cap. */
export class BodyTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`the answer is larger than ${maxBytes} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Reads a response body as UTF-8, stopping (and cancelling the stream) as soon as it exceeds
 * `maxBytes`, so a hostile or broken server cannot make us buffer an unbounded answer (E11, I23).
 */
export async function readCappedText(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new BodyTooLargeError(maxBytes);
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLargeError(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readCapped(response: Response, url: string, signal: AbortSignal): Promise<string> {
  try {
    return await readCappedText(response, MAX_BODY_BYTES);
  } catch (error) {
    if (error instanceof BodyTooLargeError) throw new ZoneFetchError(`GET ${logSafe(url)} answered more than ${MAX_BODY_BYTES} bytes`);
    throw new ZoneFetchError(`GET ${logSafe(url)} failed while reading: ${logSafe(describeNetworkError(error, signal))}`);
  }
}

/** A connection the peer reset or closed before answering (Node's fetch reports it in `cause.code`). */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

function isResetConnection(error: unknown): boolean {
  return RESET_CODES.has((error as { cause?: { code?: unknown } })?.cause?.code as string);
}

export function describeNetworkError(error: unknown, signal: AbortSignal): string {
  if (signal.aborted) return `no complete answer within ${FETCH_TIMEOUT_MS} ms`;
  const cause = (error as { cause?: { code?: unknown } })?.cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  return error instanceof Error ? error.name : 'network error';
}

/**
 * The authorization server metadata of `issuer`: RFC 8414 (well-known segment inserted between host
 * and path, §3.1), falling back to OpenID Connect Discovery (segment appended, catalogue F6) only
 * when the former is 404. The document's `issuer` must equal `issuer` exactly (RFC 8414 §3.3, F2).
 */
export async function fetchZoneMetadataDocument(
  fetchFn: FetchLike,
  issuer: string,
): Promise<Record<string, unknown> & { issuer: string }> {
  const issuerUrl = new URL(issuer);
  const path = issuerUrl.pathname.replace(/\/+$/, '');
  let document: unknown;
  try {
    document = await fetchZoneJson(fetchFn, issuerUrl.origin + AS_WELL_KNOWN + path);
  } catch (error) {
    if (!(error instanceof ZoneFetchError && error.status === 404)) throw error;
    document = await fetchOidcFallback(fetchFn, issuer);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new ZoneFetchError('zone metadata is not a JSON object');
  }
  const doc = document as Record<string, unknown>;
  if (doc.issuer !== issuer) throw issuerMismatch(doc.issuer, issuer);
  return doc as Record<string, unknown> & { issuer: string };
}

/** The OIDC discovery document after a 404 for RFC 8414's; both 404 is a configuration error. */
async function fetchOidcFallback(fetchFn: FetchLike, issuer: string): Promise<unknown> {
  const url = issuer.replace(/\/+$/, '') + OIDC_WELL_KNOWN;
  try {
    return await fetchZoneJson(fetchFn, url);
  } catch (error) {
    if (!(error instanceof ZoneFetchError && error.status === 404)) throw error;
    const hint = "is 'zoneUrl' the zone's issuer URL, e.g. https://<zone-id>.keycard.cloud?";
    throw new ZoneFetchError(`the zone has no metadata: RFC 8414 and OpenID discovery both answered HTTP 404 (${hint})`, 404, true);
  }
}

/** RFC 8414 §3.3: the document's issuer must be the configured one, code point for code point. */
function issuerMismatch(found: unknown, expected: string): ZoneFetchError {
  const foundText = logSafe(JSON.stringify(found) ?? 'nothing');
  const slash = typeof found === 'string' && found.replace(/\/$/, '') === expected.replace(/\/$/, '') ? ' (they differ by a trailing slash)' : '';
  return new ZoneFetchError(
    `zone metadata issuer ${foundText} does not equal the configured zoneUrl ${JSON.stringify(expected)}${slash}: set 'zoneUrl' to the zone's issuer exactly`,
    undefined,
    typeof found === 'string',
  );
}
