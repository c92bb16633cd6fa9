import { createHash, createPublicKey, type JsonWebKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { jwkThumbprint } from '../dpop/jwk-thumbprint.js';
import { verifyJws } from '../jws-crypto.js';
import type { IncomingHttpHeaders } from 'node:http';
import { OAuthError } from './oauth-error.js';
import { tryFormDecode } from './token-form.js';

/** A client the test zone knows, with the ways it may authenticate. */
export interface TestZoneClient {
  clientId: string;
  /** For `client_secret_basic` / `client_secret_post`. */
  clientSecret?: string;
  /** For `private_key_jwt`: the public half of the client's key. */
  publicKey?: KeyObject;
  /** For workload identity: whether a platform token (`client_assertion`) identifies this client. */
  acceptAssertion?: (assertion: string) => boolean;
  /** Scopes this client may obtain per resource. @default the zone's `resources` */
  scopes?: Record<string, string[]>;
  /** Redirect URIs allowed in authorization code requests (exact match). */
  redirectUris?: string[];
  /** A public client (no secret): authenticates with `client_id` alone, PKCE required. */
  public?: boolean;
}

/** An authorization code the zone handed out, waiting to be redeemed once. */
export interface PendingCode {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  resource?: string;
  scope?: string;
  user: Record<string, unknown>;
  expiresAt: number;
}

/** One request the token endpoint received, for tests to assert on. */
export interface RecordedTokenRequest {
  headers: IncomingHttpHeaders;
  form: Record<string, string>;
}

/** The zone facilities the token endpoint needs. */
export interface TokenIssuer {
  readonly issuer: string;
  readonly tokenEndpoint: string;
  readonly resources: Record<string, string[]>;
  issueToken(claims: Record<string, unknown>): string;
  /** Verifies a token of this zone (signature, issuer, expiry); its claims, or undefined. */
  verifyOwnToken(token: string): Record<string, unknown> | undefined;
  /** Takes (and forgets) an authorization code. */
  redeemCode(code: string): PendingCode | undefined;
  /** OAuth error the zone answers for a resource it refuses, whatever the grant (partial grants). */
  refusalFor(resource: string): string | undefined;
  /** Whether the zone's policy lets clients exchange a user identifier (substitute-user). */
  impersonationPolicy(): ImpersonationPolicy;
  /** DPoP at this endpoint: the nonce proofs must carry, and whether proofs bind tokens at all. */
  dpopPolicy(): { nonce?: string; bind: boolean };
}

/** The zone's policy for substitute-user exchanges (impersonation). */
export type ImpersonationPolicy = 'allowed' | 'refused';

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SUBSTITUTE_USER_TOKEN_TYPE = 'urn:keycard:params:oauth:token-type:substitute-user';

/** RFC 6749 §5.2: a failed `client_secret_basic` is a 401 with the scheme's challenge. */
const basicRefusal = () => new OAuthError(401, 'invalid_client', { 'WWW-Authenticate': 'Basic realm="test-zone"' });

/**
 * `client_secret_basic` credentials (RFC 6749 §2.3.1, RFC 7617): undefined when the header is not
 * the Basic scheme. A Basic header that is not base64 of `id:secret`, each form-encoded, is refused.
 * @throws OAuthError 401 `invalid_client`
 */
function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  if (!/^basic(?: |$)/i.test(header ?? '')) return undefined;
  const encoded = /^basic +([A-Za-z0-9+/]+={0,2})$/i.exec(header!)?.[1];
  const decoded = encoded === undefined ? '' : Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':'); // the id has no colon; the secret may (RFC 7617 §2)
  const id = colon === -1 ? undefined : tryFormDecode(decoded.slice(0, colon));
  const secret = colon === -1 ? undefined : tryFormDecode(decoded.slice(colon + 1));
  if (id === undefined || secret === undefined) throw basicRefusal();
  return { id, secret };
}

function sameSecret(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * The test zone's token endpoint: `client_credentials` and RFC 8693 token exchange, with client
 * authentication by secret (basic or post), `private_key_jwt` and workload identity assertions.
 */
export class TokenEndpoint {
  constructor(
    private readonly zone: TokenIssuer,
    private readonly clients: readonly TestZoneClient[],
  ) {}

  /**
   * Answers one token request: the JSON body and status to send. `form` is the body as
   * `parseTokenForm` read it, undefined when malformed (400 `invalid_request`). Malformed
   * input is always an OAuth error (400 `invalid_request`, 401 `invalid_client`), never a throw.
   */
  handle(headers: IncomingHttpHeaders, form: Record<string, string> | undefined): { status: number; body: unknown; headers?: Record<string, string> } {
    try {
      if (!form) throw new OAuthError(400, 'invalid_request');
      const client = this.authenticate(headers, form);
      const jkt = this.dpopKeyOf(headers);
      const answer = this.grant(client, form);
      return jkt === undefined ? answer : bindToKey(answer, jkt, (claims) => this.zone.issueToken(claims));
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return { status: error.status, body: { error: error.error }, headers: error.headers };
    }
  }

  /**
   * Client authentication of a request to the token or introspection endpoint (RFC 6749 §2.3,
   * RFC 7523, RFC 7662 §2.1): the one client it proves to be.
   * @throws OAuthError 401 `invalid_client` (400 `invalid_request` for two methods at once).
   */
  authenticate(headers: IncomingHttpHeaders, form: Record<string, string>): TestZoneClient {
    const basic = basicCredentials(headers.authorization);
    const methods = [basic, form.client_secret, form.client_assertion].filter((m) => m !== undefined);
    if (methods.length === 0) {
      // A public client identifies itself by client_id alone (RFC 6749 §2.1); PKCE protects the code.
      const client = this.clients.find((c) => c.public && c.clientId === form.client_id);
      if (client) return client;
    }
    if (methods.length !== 1) throw new OAuthError(methods.length > 1 ? 400 : 401, methods.length > 1 ? 'invalid_request' : 'invalid_client');
    if (basic) {
      const client = this.clients.find((c) => c.clientId === basic.id);
      if (!client?.clientSecret || !sameSecret(client.clientSecret, basic.secret)) throw basicRefusal();
      return client;
    }
    if (form.client_secret !== undefined) {
      const client = this.clients.find((c) => c.clientId === form.client_id);
      if (!client?.clientSecret || !sameSecret(client.clientSecret, form.client_secret)) throw new OAuthError(401, 'invalid_client');
      return client;
    }
    if (form.client_assertion_type !== JWT_BEARER) throw new OAuthError(401, 'invalid_client');
    const assertion = form.client_assertion;
    const candidates = form.client_id ? this.clients.filter((c) => c.clientId === form.client_id) : this.clients;
    const client = candidates.find((c) => (c.publicKey ? this.validClientJwt(c, assertion) : c.acceptAssertion?.(assertion)));
    if (!client) throw new OAuthError(401, 'invalid_client');
    return client;
  }

  private grant(client: TestZoneClient, form: Record<string, string>) {
    if (form.grant_type === 'client_credentials') return this.clientCredentials(client, form);
    if (form.grant_type === TOKEN_EXCHANGE) return this.tokenExchange(client, form);
    if (form.grant_type === 'authorization_code') return this.authorizationCode(client, form);
    throw new OAuthError(400, 'unsupported_grant_type');
  }

  /**
   * The thumbprint of the request's DPoP proof key (RFC 9449 §5), or undefined without a proof (or
   * when the zone ignores proofs). Checks what a token endpoint must (§4.3): one proof, `typ`, the
   * signature by its `jwk`, `htm` POST, `htu` this endpoint, a fresh `iat`, the zone's nonce if any.
   * @throws OAuthError 400 `invalid_dpop_proof` / `use_dpop_nonce` (with `DPoP-Nonce`).
   */
  private dpopKeyOf(headers: IncomingHttpHeaders): string | undefined {
    const proof = headers.dpop;
    const policy = this.zone.dpopPolicy();
    if (proof === undefined || !policy.bind) return undefined;
    let jwk: Record<string, unknown> | undefined;
    const verified = typeof proof === 'string' && !proof.includes(',')
      ? verifyJws(proof, (raw) => {
        const header = raw as Record<string, unknown>;
        if (header.typ !== 'dpop+jwt' || typeof header.jwk !== 'object' || header.jwk === null) return undefined;
        jwk = header.jwk as Record<string, unknown>;
        try {
          return createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
        } catch {
          return undefined;
        }
      })
      : undefined;
    const claims = verified?.claims;
    const fresh = typeof claims?.iat === 'number' && Math.abs(claims.iat - Date.now() / 1000) <= 60;
    const thumbprint = jwk === undefined ? undefined : jwkThumbprint(jwk);
    if (!claims || claims.htm !== 'POST' || claims.htu !== this.zone.tokenEndpoint || !fresh || typeof claims.jti !== 'string' || !thumbprint) {
      throw new OAuthError(400, 'invalid_dpop_proof');
    }
    if (policy.nonce !== undefined && claims.nonce !== policy.nonce) throw new OAuthError(400, 'use_dpop_nonce', { 'DPoP-Nonce': policy.nonce });
    return thumbprint;
  }

  /** RFC 7523 §3: signed by the client's key, iss = sub = client id, aud = this endpoint, not expired. */
  private validClientJwt(client: TestZoneClient, assertion: string): boolean {
    const claims = verifyJws(assertion, () => client.publicKey)?.claims;
    return claims !== undefined && claims.iss === client.clientId && claims.sub === client.clientId &&
      claims.aud === this.zone.tokenEndpoint && typeof claims.exp === 'number' && claims.exp > Date.now() / 1000;
  }

  private grantableScopes(client: TestZoneClient, resource: string, requested: string | undefined): string[] {
    const refusal = this.zone.refusalFor(resource);
    if (refusal) throw new OAuthError(400, refusal);
    const allowed = (client.scopes ?? this.zone.resources)[resource];
    if (!allowed) throw new OAuthError(400, 'invalid_target');
    if (requested === undefined) return allowed;
    const scopes = requested.split(' ').filter(Boolean);
    if (!scopes.every((s) => allowed.includes(s))) throw new OAuthError(400, 'invalid_scope');
    return scopes;
  }

  private clientCredentials(client: TestZoneClient, form: Record<string, string>) {
    const resource = form.resource ?? Object.keys(client.scopes ?? this.zone.resources)[0];
    const scopes = this.grantableScopes(client, resource, form.scope);
    return this.tokenResponse({ sub: client.clientId, client_id: client.clientId, aud: resource, scope: scopes.join(' ') }, scopes);
  }

  private tokenExchange(client: TestZoneClient, form: Record<string, string>) {
    if (form.subject_token_type === SUBSTITUTE_USER_TOKEN_TYPE) return this.substituteUser(client, form);
    if (!form.subject_token || form.subject_token_type !== ACCESS_TOKEN_TYPE || !form.resource) {
      throw new OAuthError(400, 'invalid_request');
    }
    const subject = this.zone.verifyOwnToken(form.subject_token);
    // RFC 8693 §2.2.2: an unacceptable subject token is an invalid_request.
    if (!subject) throw new OAuthError(400, 'invalid_request');
    const act = this.actorOf(form, subject);
    const scopes = this.grantableScopes(client, form.resource, form.scope);
    return this.tokenResponse(
      { sub: subject.sub, client_id: client.clientId, aud: form.resource, scope: scopes.join(' '), sid: subject.sid, ...(act ? { act } : {}) },
      scopes,
    );
  }

  /**
   * The `act` claim of a delegation (RFC 8693 §4.1) when the request sends an `actor_token` (§2.1):
   * the actor is the agent holding that token (its `client_id`, as `sub` and `client_id`), and the
   * chain so far (the subject token's own `act`) nests inside it, outermost the current actor.
   * Without an actor token, no `act`.
   * @throws OAuthError 400 `invalid_request` for an actor token of another type, or one this zone did not issue (§2.2.2).
   */
  private actorOf(form: Record<string, string>, subject: Record<string, unknown>): Record<string, unknown> | undefined {
    if (form.actor_token === undefined) return undefined;
    const actor = form.actor_token_type === ACCESS_TOKEN_TYPE ? this.zone.verifyOwnToken(form.actor_token) : undefined;
    if (!actor || typeof actor.client_id !== 'string') throw new OAuthError(400, 'invalid_request');
    const prior = typeof subject.act === 'object' && subject.act !== null ? { act: subject.act } : {};
    return { sub: actor.client_id, client_id: actor.client_id, ...prior };
  }

  /**
   * Impersonation: the subject token is the user's identifier. Refused (`unauthorized_client`)
   * unless the zone's policy allows it; the issued token has the user as `sub` and the client as
   * actor (RFC 8693 §4.1 `act`).
   */
  private substituteUser(client: TestZoneClient, form: Record<string, string>) {
    if (!form.subject_token || !form.resource) throw new OAuthError(400, 'invalid_request');
    if (this.zone.impersonationPolicy() !== 'allowed') throw new OAuthError(400, 'unauthorized_client');
    const scopes = this.grantableScopes(client, form.resource, form.scope);
    return this.tokenResponse(
      { sub: form.subject_token, client_id: client.clientId, aud: form.resource, scope: scopes.join(' '), act: { sub: client.clientId } },
      scopes,
    );
  }

  /** RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6) and the RFC 8707 resource. */
  private authorizationCode(client: TestZoneClient, form: Record<string, string>) {
    const pending = form.code ? this.zone.redeemCode(form.code) : undefined;
    if (!pending || pending.expiresAt < Date.now() || pending.clientId !== client.clientId || pending.redirectUri !== form.redirect_uri) {
      throw new OAuthError(400, 'invalid_grant');
    }
    const verifier = form.code_verifier ?? '';
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier) || challenge !== pending.codeChallenge) throw new OAuthError(400, 'invalid_grant');
    const resource = form.resource ?? pending.resource;
    if (pending.resource && resource !== pending.resource) throw new OAuthError(400, 'invalid_target');
    const scopes = resource ? this.grantableScopes(client, resource, pending.scope) : (pending.scope ?? '').split(' ').filter(Boolean);
    return this.tokenResponse({ ...pending.user, client_id: client.clientId, aud: resource, scope: scopes.join(' ') }, scopes);
  }

  private tokenResponse(claims: Record<string, unknown>, scopes: string[]) {
    return {
      status: 200,
      body: {
        access_token: this.zone.issueToken(claims),
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: 'Bearer',
        expires_in: 300,
        scope: scopes.join(' '),
      },
    };
  }
}

/** A successful answer re-issued bound to `jkt` (RFC 9449 §5, §6.1): the same claims plus `cnf`, `token_type` `DPoP`. */
function bindToKey(
  answer: { status: number; body: unknown; headers?: Record<string, string> },
  jkt: string,
  issue: (claims: Record<string, unknown>) => string,
): { status: number; body: unknown; headers?: Record<string, string> } {
  const body = answer.body as { access_token?: string } & Record<string, unknown>;
  if (answer.status !== 200 || typeof body.access_token !== 'string') return answer;
  const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>;
  return { ...answer, body: { ...body, access_token: issue({ ...claims, cnf: { jkt } }), token_type: 'DPoP' } };
}
