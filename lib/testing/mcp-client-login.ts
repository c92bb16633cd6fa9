import { stepUpOf } from '../pkce/authenticate.js';
import { findChallenge } from '../www-authenticate.js';

/**
 * An `OAuthClientProvider` for the MCP TypeScript SDK client (`new StreamableHTTPClientTransport(url,
 * { authProvider })`) signing in at a {@link TestZone} with a registered public client. The zone's
 * authorization endpoint approves its dev user at once, so "opening the browser" is reading the
 * redirect: the code waits in {@link code} for `transport.finishAuth(login.code)`. Written against the
 * SDK's interface by shape (the SDK is not a dependency of this package). Tests and demos only.
 *
 * RFC 9470 step-up: the SDK client (1.x) reads only `resource_metadata` and `scope` from a 401 and
 * never sends `acr_values` / `max_age`. Pass {@link fetch} as the transport's `fetch` too, and the
 * authorization that follows a 401 `insufficient_user_authentication` carries them (RFC 9470 §4).
 * @publicApi
 */
export class TestZoneMcpLogin {
  /** Every authorization request the SDK started, oldest first (to assert `scope`, `resource`, PKCE). */
  readonly authorizations: URL[] = [];
  /** The code of the last authorization. */
  code: string | undefined;
  private saved: Record<string, unknown> | undefined;
  private verifier = '';
  /** `acr_values` / `max_age` of the last step-up challenge, for the next authorization only. */
  private stepUp: Record<string, string> = {};

  /**
   * A `fetch` for the transport (`{ authProvider: login, fetch: login.fetch }`) that notes an RFC
   * 9470 challenge's `acr_values` and `max_age`, so the next authorization asks for them.
   */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const answer = await fetch(input, init);
    if (answer.status === 401) this.stepUp = stepUpOf(findChallenge(answer.headers.get('www-authenticate'), 'Bearer'));
    return answer;
  };

  /**
   * @param clientId a public client the zone knows (`TestZoneOptions.clients`, `public: true`).
   * @param redirectUrl one of its `redirectUris` (never contacted).
   */
  constructor(private readonly clientId: string, readonly redirectUrl: string) {}

  get clientMetadata() {
    return { client_name: this.clientId, redirect_uris: [this.redirectUrl], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() {
    return { client_id: this.clientId };
  }
  tokens<T>(): T | undefined {
    return this.saved as T | undefined;
  }
  saveTokens(tokens: object): void {
    this.saved = tokens as Record<string, unknown>;
  }
  /** The current access token, once signed in. */
  get accessToken(): string | undefined {
    return this.saved?.access_token as string | undefined;
  }
  async redirectToAuthorization(url: URL): Promise<void> {
    for (const [name, value] of Object.entries(this.stepUp)) url.searchParams.set(name, value);
    this.stepUp = {};
    this.authorizations.push(url);
    const answer = await fetch(url, { redirect: 'manual' });
    this.code = new URL(answer.headers.get('location') ?? 'about:blank').searchParams.get('code') ?? undefined;
  }
  saveCodeVerifier(verifier: string): void {
    this.verifier = verifier;
  }
  codeVerifier(): string {
    return this.verifier;
  }
}
