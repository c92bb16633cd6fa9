/**
 * An OAuth error the test zone answers (RFC 6749 §5.2): the HTTP status, the `error` code, and any
 * headers (a `WWW-Authenticate` challenge for a failed `client_secret_basic`).
 */
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(error);
  }
}
