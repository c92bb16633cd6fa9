import type { IncomingHttpHeaders } from 'node:http';
import { OAuthError } from './oauth-error.js';
import type { RecordedTokenRequest, TestZoneClient } from './token-endpoint.js';

/** One request the introspection endpoint received: its request target, headers and decoded form. */
export interface RecordedIntrospection extends RecordedTokenRequest {
  /** The request target as sent (path and query): the token never belongs there. */
  readonly url: string;
}

/** What the introspection endpoint needs of its zone. */
export interface IntrospectionSource {
  readonly issuer: string;
  /** Client authentication as the token endpoint does it. @throws OAuthError 401 `invalid_client` */
  authenticateClient(headers: IncomingHttpHeaders, form: Record<string, string>): TestZoneClient;
  /** The claims of a valid token of this zone (signature, issuer, expiry), else undefined. */
  verifyOwnToken(token: string): Record<string, unknown> | undefined;
}

/**
 * The test zone's RFC 7662 endpoint (`POST /introspect`), steerable from tests: every request is
 * recorded (headers and decoded form) and authenticated like a token request (401 `invalid_client`
 * otherwise). The answer for a token is, in order: the one a test set ({@link answerFor}); an
 * opaque token's ({@link issueOpaque}); `active: true` with the claims of a valid JWT of the zone;
 * else `{ "active": false }`. Faults (500, hang, a redirect, HTML, `active: "yes"`) are set on the
 * zone as for its other endpoints (`zone.faults.introspection`).
 */
export class IntrospectionEndpoint {
  /** Every request received, oldest first. */
  readonly requests: RecordedIntrospection[] = [];
  /** Answers set by tests, by token. */
  private readonly answers = new Map<string, Record<string, unknown>>();

  constructor(private readonly zone: IntrospectionSource) {}

  /** Answers `answer` (as is, `active` included) whenever `token` is introspected, until {@link reset}. */
  answerFor(token: string, answer: Record<string, unknown>): void {
    this.answers.set(token, answer);
  }

  /** The answer of one request, as the zone sends it. */
  handle(headers: IncomingHttpHeaders, form: Record<string, string> | undefined): { status: number; body: unknown; headers?: Record<string, string> } {
    try {
      if (form === undefined || typeof form.token !== 'string') throw new OAuthError(400, 'invalid_request');
      this.zone.authenticateClient(headers, form);
      return { status: 200, body: this.answerOf(form.token) };
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return { status: error.status, body: { error: error.error }, headers: error.headers };
    }
  }

  /** Forgets answers set by tests and recorded requests. */
  reset(): void {
    this.answers.clear();
    this.requests.length = 0;
  }

  private answerOf(token: string): Record<string, unknown> {
    const set = this.answers.get(token);
    if (set !== undefined) return set;
    const claims = this.zone.verifyOwnToken(token);
    return claims === undefined ? { active: false } : { active: true, token_type: 'Bearer', ...claims };
  }
}
