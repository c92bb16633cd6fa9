import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { samePrincipal, type Principal } from '../decision/principal.js';

/** `Mcp-Session-Id` (MCP 2025-11-25 transports, §Session Management), as Node names it in `headers`. */
const SESSION_HEADER = 'mcp-session-id';

/**
 * Most sessions remembered. Beyond it the least recently used one is forgotten: its next request is
 * answered as an unknown session, after which an MCP client starts a new one (§Session Management
 * item 4). So a flood of `initialize` costs memory up to this bound, never a session handed over.
 */
const MAX_SESSIONS = 100_000;

/** What {@link McpSessions.admit} did with a request. */
export type SessionCheck = 'sent' | 'unknown' | 'mismatch';

/** The arguments of `ServerResponse.writeHead`: `(status, headers?)` or `(status, reason, headers?)`. */
type WriteHeadArgs = unknown[];

/**
 * MCP sessions belong to the principal that opened them (catalogue O13, O16 b; decisions Q18, Q19).
 * A session id is bound to the verified principal (issuer, user, stable agent id) of the admitted
 * request whose answer issued it: read off the `Mcp-Session-Id` response header as the transport
 * writes it, before a byte leaves, so whatever transport made it (mcp-nest's, the SDK's in an app's
 * controller) and whatever it answers. Every later request naming the session is checked after
 * verification and before the transport reads it: another principal, or no principal at all, is
 * shown a session id that names no session instead, so the transport answers exactly as it does for
 * an unknown session (404, byte for byte: no oracle of which sessions exist) and the owner's session
 * is untouched (bob's `DELETE` ends nothing). A session id the module never saw issued is hidden the
 * same way (fail closed), but is no refusal of ours: a client still holding a session from before a
 * restart is not an attack.
 */
export class McpSessions {
  /** The owner of each session issued through an admitted request, least recently used first. */
  private readonly owners = new Map<string, Principal>();

  /**
   * Judges one request admitted on an MCP endpoint.
   * @param principal the request's verified principal; `undefined` for an anonymous call of a `@Public()` tool.
   * @param response where the transport answers (to see a session being issued); `undefined` outside HTTP.
   * @returns `'sent'` when the request reaches the transport as sent (it names no session, or one of
   *   `principal`'s); `'unknown'` when it names a session never issued here, and `'mismatch'` when it
   *   names another principal's: in both cases the transport now reads a session that does not exist.
   */
  admit(raw: IncomingMessage, response: ServerResponse | undefined, principal: Principal | undefined): SessionCheck {
    const id = raw.headers[SESSION_HEADER];
    if (id === undefined) {
      if (principal !== undefined && response !== undefined) this.ownWhenIssued(response, principal);
      return 'sent';
    }
    const owner = typeof id === 'string' ? this.owners.get(id) : undefined;
    if (owner === undefined || principal === undefined || !samePrincipal(owner, principal)) {
      hideSession(raw);
      return owner === undefined ? 'unknown' : 'mismatch';
    }
    this.touch(id as string, owner);
    if (response !== undefined) this.forgetWhenEnded(id as string, raw, response);
    return 'sent';
  }

  /** How many sessions are bound now (for tests and health). */
  get size(): number {
    return this.owners.size;
  }

  /** Binds the session id the transport issues on `response` (the answer to `initialize`), if any. */
  private ownWhenIssued(response: ServerResponse, principal: Principal): void {
    const writeHead = response.writeHead;
    const owner: Principal = { issuer: principal.issuer, subject: principal.subject, agentId: principal.agentId };
    // Node calls writeHead for implicit headers too (a first write or end), so every answer passes here once.
    response.writeHead = ((...args: WriteHeadArgs) => {
      response.writeHead = writeHead;
      const issued = issuedSessionId(response, args);
      // Never re-bound: a transport that issued one id twice keeps its first owner.
      if (issued !== undefined && !this.owners.has(issued)) this.touch(issued, owner);
      return (writeHead as (...a: WriteHeadArgs) => ServerResponse).apply(response, args);
    }) as ServerResponse['writeHead'];
  }

  /** The owner ended the session (`DELETE` answered 2xx), or the transport no longer knows it (404). */
  private forgetWhenEnded(id: string, raw: IncomingMessage, response: ServerResponse): void {
    response.once('finish', () => {
      const status = response.statusCode;
      if (status === 404 || (raw.method === 'DELETE' && status >= 200 && status < 300)) this.owners.delete(id);
    });
  }

  /** Records `id` as most recently used, forgetting the least recently used one beyond {@link MAX_SESSIONS}. */
  private touch(id: string, owner: Principal): void {
    this.owners.delete(id);
    this.owners.set(id, owner);
    if (this.owners.size > MAX_SESSIONS) this.owners.delete(this.owners.keys().next().value!);
  }
}

/**
 * Makes the request name a session that does not exist, in both places transports read it
 * (`headers`: mcp-nest and hand-written routing; `rawHeaders`: the SDK's web-standard transport).
 * A fresh random id, so it can never be a session any generator issued.
 */
function hideSession(raw: IncomingMessage): void {
  const unknown = randomUUID();
  raw.headers[SESSION_HEADER] = unknown;
  const rawHeaders = raw.rawHeaders;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === SESSION_HEADER) rawHeaders[i + 1] = unknown;
  }
}

/** The `Mcp-Session-Id` an answer carries: passed to writeHead (an object or a flat list) or set before. */
function issuedSessionId(response: ServerResponse, args: WriteHeadArgs): string | undefined {
  const headers: unknown = typeof args[1] === 'string' ? args[2] : args[1];
  let value: unknown;
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === SESSION_HEADER) value = headers[i + 1];
    }
  } else if (typeof headers === 'object' && headers !== null) {
    for (const [name, v] of Object.entries(headers)) if (name.toLowerCase() === SESSION_HEADER) value = v;
  }
  value ??= response.getHeader(SESSION_HEADER);
  return typeof value === 'string' && value !== '' ? value : undefined;
}
