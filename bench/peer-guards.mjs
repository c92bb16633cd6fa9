// Two guards for bench/server.mjs that are not this module, for the cold-path rows (issue 24):
//  - the hand-written ideal: what any correct verifier must do, and nothing else (split, base64url,
//    JSON, crypto.verify with a KeyObject imported once per kid, iss/aud/exp/nbf/alg checks), and
//    the route's own requirement: its scope (`read`, what the keycard route's @RequireScopes asks;
//    before 2026-12-07 the peers checked no scope, so the comparison charged the module for an
//    authorization check the peers did not make);
//  - fast-jwt (what @fastify/jwt uses) with its verified-token cache, keys from the same JWKS by
//    `kid` through its key callback (it imports the PEM the callback answers on every verification:
//    its cold path is that of an app resolving keys by kid, not of a fixed key; bench:micro has
//    its verifier with the key given up front), and the same scope check.
// Both read the token from the request of a route or of a resolver, like the Keycard guard.
import { createPublicKey, verify } from 'node:crypto';
import { ForbiddenException, Injectable, UnauthorizedException } from '@nestjs/common';

const HASH = { RS256: 'sha256', ES256: 'sha256' };

/** The zone's keys by kid, fetched once: `{ alg, key: KeyObject, pem }`. */
export async function zoneKeys(zoneUrl) {
  const { keys } = await (await fetch(`${zoneUrl}/jwks`)).json();
  return new Map(keys.map((jwk) => {
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    return [jwk.kid, { alg: jwk.alg ?? (jwk.kty === 'EC' ? 'ES256' : 'RS256'), key, pem: key.export({ format: 'pem', type: 'spki' }) }];
  }));
}

function requestOf(context) {
  return context.getType() === 'graphql' ? context.getArgs()[2].req : context.switchToHttp().getRequest();
}

/** The route's scope among the token's space-delimited `scope` (RFC 6749 §3.3). */
function holdsScope(payload, scope) {
  return typeof payload.scope === 'string' && payload.scope.split(' ').includes(scope);
}

function bearerOf(request) {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) throw new UnauthorizedException();
  return header.slice(7);
}

export function idealGuard({ keys, issuer, audience, scope }) {
  class IdealGuard {
    canActivate(context) {
      const request = requestOf(context);
      request.user = this.check(bearerOf(request));
      return true;
    }

    check(token) {
      const first = token.indexOf('.');
      const second = token.indexOf('.', first + 1);
      if (first <= 0 || second === -1 || token.indexOf('.', second + 1) !== -1) throw new UnauthorizedException();
      try {
        const header = JSON.parse(Buffer.from(token.slice(0, first), 'base64url').toString());
        const key = keys.get(header.kid);
        if (key === undefined || key.alg !== header.alg) throw new Error('key');
        const signature = Buffer.from(token.slice(second + 1), 'base64url');
        const options = header.alg.startsWith('ES') ? { key: key.key, dsaEncoding: 'ieee-p1363' } : key.key;
        if (!verify(HASH[header.alg], Buffer.from(token.slice(0, second)), options, signature)) throw new Error('signature');
        const payload = JSON.parse(Buffer.from(token.slice(first + 1, second), 'base64url').toString());
        const now = Date.now() / 1000;
        const audienceOk = payload.aud === audience || (Array.isArray(payload.aud) && payload.aud.includes(audience));
        if (payload.iss !== issuer || !audienceOk || typeof payload.exp !== 'number' || payload.exp < now) throw new Error('claims');
        if (payload.nbf !== undefined && !(payload.nbf <= now)) throw new Error('claims');
        if (!holdsScope(payload, scope)) throw new Error('scope');
        return payload;
      } catch {
        throw new UnauthorizedException();
      }
    }
  }
  Injectable()(IdealGuard);
  return IdealGuard;
}

export async function fastJwtGuard({ keys, issuer, audience, cacheSize, scope }) {
  const { createVerifier } = await import('fast-jwt');
  const verifier = createVerifier({
    key: async ({ header }) => keys.get(header.kid)?.pem ?? '',
    algorithms: ['RS256', 'ES256'],
    allowedIss: issuer,
    allowedAud: audience,
    requiredClaims: ['exp'],
    cache: cacheSize,
  });
  class FastJwtGuard {
    async canActivate(context) {
      const request = requestOf(context);
      let payload;
      try {
        payload = await verifier(bearerOf(request));
      } catch {
        throw new UnauthorizedException();
      }
      if (!holdsScope(payload, scope)) throw new ForbiddenException();
      request.user = payload;
      return true;
    }
  }
  Injectable()(FastJwtGuard);
  return FastJwtGuard;
}
