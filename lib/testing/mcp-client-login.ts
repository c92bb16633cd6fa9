/**
 * An `OAuthClientProvider` for the MCP TypeScript SDK client (`new StreamableHTTPClientTransport(url,
 * { authProvider })`) signing in at a {@link TestZone} with a registered public client. The zone's
 * authorization endpoint approves its dev user at once, so "opening the browser" is reading the
 * redirect: the code waits in {@link code} for `transport.finishAuth(login.code)`. Written against the
 * SDK's interface by shape (the SDK is not a dependency of this package). Tests and demos only.
 * @publicApi
 */
export class TestZoneMcpLogin {
  /** Every authorization request the SDK started, oldest first (to assert `scope`, `resource`, PKCE). */
  readonly authorizations: URL[] = [];
  /** The code of the last authorization. */
  code: string | undefined;
  private saved: Record<string, unknown> | undefined;
  private verifier = '';

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
