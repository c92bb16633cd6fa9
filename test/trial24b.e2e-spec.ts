/**
 * Attack trial of issue 24's per-request path (trial24b): the fingerprint-keyed verified-token
 * cache, the `b64token` grammar moved from the HTTP extractor into the verification, and the
 * one-time look at pino-http's request loggers that the HTTP token reader makes at its first
 * token. A real Nest app on loopback, the real local zone, pino-http writing to a captured stream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Req, Res, type ExecutionContext } from '@nestjs/common';
import { Query, Resolver } from '@nestjs/graphql';
import { Agent, KeycardGuard, OptionalAuth, Public, RequireScopes, type AgentContext } from '../lib/index.js';
import { pinoHttp } from 'pino-http';
import { Writable } from 'node:stream';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R, T0_HEADER, baseClaims, bearer, zoneSigned } from './support/forge.js';
import { send, sendRaw } from './support/http.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp } from './support/graphql-app.js';
import { expectNoLeak } from './support/contexts.js';
import { freePort } from './support/free-port.js';
import { startMcpApp } from './support/mcp-app.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

/** Every line written to it, one string each. */
class CapturedStream extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(...String(chunk).split('\n').filter(Boolean));
    done();
  }
}

@Controller()
class TrialController {
  /** Holds its agent across a pause, while other requests are judged: its lists must still be its own. */
  @Get('slow')
  async slow(@Agent() agent: AgentContext) {
    const before = { scopes: [...agent.scopes], audience: [...agent.audience] };
    await new Promise((r) => setTimeout(r, 30));
    return { before, after: { scopes: agent.scopes, audience: agent.audience }, frozen: Object.isFrozen(agent.scopes) && Object.isFrozen(agent.audience) };
  }

  @OptionalAuth()
  @Get('maybe')
  maybe(@Agent() agent?: AgentContext) {
    return { agent: agent?.clientId ?? null };
  }
}

/** An `@OptionalAuth()` field beside the suite app's fields. */
@Resolver()
class MaybeResolver {
  @OptionalAuth()
  @Query(() => String, { nullable: true })
  maybe(@Agent() agent?: AgentContext): string {
    return agent === undefined ? 'anonymous' : `agent:${agent.clientId}`;
  }
}

/**
 * Contexts made by hand, as unit tests and custom guards make them: what `switchToHttp()` answers
 * is the truth; `getArgByIndex` is a stub (a mock library's auto-stub) or absent.
 */
function handMade(req: object, res: object, getArgByIndex: ((i: number) => unknown) | undefined): ExecutionContext {
  const context = {
    getType: () => 'http',
    getClass: () => HandMadeController,
    getHandler: () => HandMadeController.prototype.scoped,
    getArgs: () => [req, res],
    switchToHttp: () => ({ getRequest: () => req, getResponse: () => res, getNext: () => undefined }),
    switchToRpc: () => { throw new Error('not rpc'); },
    switchToWs: () => { throw new Error('not ws'); },
  };
  return (getArgByIndex === undefined ? context : { ...context, getArgByIndex }) as unknown as ExecutionContext;
}

@Controller()
class HandMadeController {
  constructor(private readonly guard: KeycardGuard) {}

  /** The scoped handler the hand-made contexts name. */
  @RequireScopes('orders:read')
  @Get('scoped')
  scoped() {
    return { scoped: true };
  }

  /** Runs the module's guard on a hand-made context around this very request, and says what it answered. */
  @Public()
  @Get('hand-made')
  async judge(@Req() req: object, @Res({ passthrough: true }) res: object) {
    const outcomes: string[] = [];
    for (const stub of [undefined, () => undefined, (i: number) => ({ stub: i })]) {
      try {
        outcomes.push(String(await this.guard.canActivate(handMade(req, res, stub))));
      } catch (error) {
        outcomes.push(`${(error as Error).constructor.name}:${(error as { getStatus?: () => number }).getStatus?.() ?? 'none'}`);
      }
      delete (req as { user?: unknown }).user; // each run judges afresh
    }
    return { outcomes };
  }
}

let zone: TestZone;
beforeAll(async () => {
  zone = await TestZone.start({ audience: R });
});
afterAll(async () => {
  await zone.stop();
});

describe.each(ADAPTERS)('trial24b (%s)', (adapter) => {
  let app: RunningApp | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('M21 a first token outside b64token does not use up the look at pino-http: the module still says, once, that the request logger writes tokens', async () => {
    const stream = new CapturedStream();
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { configure: (nest) => nest.use(pinoHttp({}, stream)) });
    // The attacker's first request: a token JSON escapes (`"`, `\`), so it is never found verbatim in the logger's bindings.
    const junk = 'ab"c\\d';
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(junk)), '401 IT scope=orders:read', PRM, [junk], app.logger.lines);
    const token = zone.issueToken({ scope: 'orders:read' });
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
    await new Promise((r) => setTimeout(r, 50));
    expect(stream.lines.some((line) => line.includes(`Bearer ${token}`))).toBe(true); // the fault the warning is about
    const warnings = app.logger.lines.filter((line) => line.includes('keycardPinoHttpOptions()'));
    expect(warnings).toHaveLength(1);
  });

  it('M18 a token sharing a cached token\'s signature (same fingerprint) under another header or payload is refused, and the victim stays cached', async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
    const victim = zoneSigned(zone, T0_HEADER, baseClaims(zone, { scope: 'orders:read' }));
    for (let i = 0; i < 3; i++) expectOutcome(await send(app.url, 'GET', '/orders', bearer(victim)), '200', PRM, [victim], app.logger.lines);
    const [header, payload, signature] = victim.split('.');
    const otherPayload = Buffer.from(JSON.stringify(baseClaims(zone, { scope: 'orders:read admin', sub: 'mallory' }))).toString('base64url');
    const otherHeader = Buffer.from(JSON.stringify({ ...T0_HEADER, x: 1 })).toString('base64url');
    for (const forged of [`${header}.${otherPayload}.${signature}`, `${otherHeader}.${payload}.${signature}`, `${header}.${payload}x.${signature}`]) {
      expectOutcome(await send(app.url, 'GET', '/admin', bearer(forged)), '401 IT scope=admin', PRM, [forged, victim], app.logger.lines);
    }
    // Respelt signatures (M18): the last character's unused bits, and padding.
    const last = signature[signature.length - 1];
    const respelt = `${header}.${payload}.${signature.slice(0, -1)}${String.fromCharCode(last.charCodeAt(0) ^ 1)}`;
    for (const forged of [respelt, `${victim}=`, `${victim}==`]) {
      expectOutcome(await send(app.url, 'GET', '/orders', bearer(forged)), '401 IT scope=orders:read', PRM, [forged, victim], app.logger.lines);
    }
    const lines = app.logger.lines.length;
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(victim)), '200', PRM, [victim], app.logger.lines);
    expect(app.logger.lines.slice(lines).join('\n')).not.toContain('signature_invalid');
  });

  it('M18 a cached token is not admitted past its exp', async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
    const now = Math.floor(Date.now() / 1000);
    const token = zoneSigned(zone, T0_HEADER, baseClaims(zone, { exp: now + 5 }));
    for (let i = 0; i < 3; i++) expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
    app.clock.offsetMs = 10 * 60_000;
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '401 IT scope=orders:read', PRM, [token], app.logger.lines);
  });

  it('E20 a cached token is not admitted once its key left the zone\'s key set (keys refetched after their cache age)', async () => {
    const rotating = await TestZone.start({ audience: R });
    app = await startApp(adapter, { zoneUrl: rotating.issuer, resource: R });
    try {
      const now = Math.floor(Date.now() / 1000);
      const token = zoneSigned(rotating, T0_HEADER, baseClaims(rotating, { exp: now + 3600 }));
      for (let i = 0; i < 3; i++) expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
      rotating.rotateKeys();
      rotating.removeKey('rs1');
      app.clock.offsetMs = 10 * 60_000 + 1_000;
      expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '401 IT scope=orders:read', PRM, [token], app.logger.lines);
    } finally {
      await rotating.stop();
    }
  });

  it('Q17 a token cached for one resource is not admitted on a route another resource of the same app covers', async () => {
    const ADMIN = `${R}/admin`;
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: [R, ADMIN] });
    const token = zone.issueToken({ aud: R, scope: 'orders:read admin' });
    for (let i = 0; i < 3; i++) expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
    const lines = app.logger.lines.length;
    const res = await send(app.url, 'GET', '/admin', bearer(token));
    expectOutcome(res, '401 IT scope=admin', `${R}/.well-known/oauth-protected-resource/admin`, [token], app.logger.lines);
    expect(app.logger.lines.slice(lines).join('\n')).toContain('reason=audience_mismatch');
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
  });

  it('D1 agents whose tokens carry other scope and aud text never show each other\'s lists (shared frozen lists), scope strings, scp arrays and aud arrays alternating', async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, readScpClaim: true }, { controllers: [TrialController] });
    const claims: Record<string, unknown>[] = [
      { scope: 'a b' }, { scope: 'b  c ' }, { scope: undefined, scp: ['x', 'y'] }, { scope: 'a b' },
      { aud: [R, 'https://other.example'] }, { aud: [R] }, { scope: undefined, scp: 'p q' }, { scope: 'c' },
    ];
    const tokens = claims.map((c) => zoneSigned(zone, T0_HEADER, baseClaims(zone, c)));
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(tokens.map((t) => send(app!.url, 'GET', '/slow', bearer(t))));
      answers.forEach((res, i) => {
        const body = res.json as { before: unknown; after: unknown; frozen: boolean };
        expect(res.status).toBe(200);
        expect(body.after).toEqual(body.before);
        expect(body.frozen).toBe(true);
        const c = { ...baseClaims(zone), ...claims[i] };
        const scopes = typeof c.scope === 'string' ? c.scope.split(' ').filter(Boolean) : Array.isArray(c.scp) ? c.scp : String(c.scp).split(' ');
        expect(body.before).toEqual({ scopes, audience: typeof c.aud === 'string' ? [c.aud] : c.aud });
      });
    }
  });

  it('hand-made http contexts (getArgByIndex absent, or a stub that is not the request): the guard judges the request switchToHttp() gives, as before issue 24', async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: [HandMadeController] });
    const token = zone.issueToken({ scope: 'orders:read' });
    const res = await send(app.url, 'GET', '/hand-made', bearer(token));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ outcomes: ['true', 'true', 'true'] });
    expect(app.logger.lines.join('\n')).not.toContain(token);
  });

  it('T15 @OptionalAuth(): a token outside b64token is refused token_malformed even while the zone cannot be reached (never served anonymously), opaque tokens off and introspect', async () => {
    const down = await TestZone.start({ audience: R });
    const issuer = down.issuer;
    await down.stop();
    for (const opaqueTokens of [undefined, 'introspect'] as const) {
      app = await startApp(adapter, { zoneUrl: issuer, resource: R, opaqueTokens, clientCredentials: { clientId: 'api', clientSecret: 'api-secret-do-not-log' } }, { controllers: [TrialController] });
      for (const junk of ['ab"c', 'a.b.c\u00e9', 'a,b', 'x y']) {
        const lines = app.logger.lines.length;
        const res = await send(app.url, 'GET', '/maybe', bearer(junk));
        expectOutcome(res, '401 IT', PRM, [junk], app.logger.lines);
        expect(app.logger.lines.slice(lines).join('\n')).toContain('reason=token_malformed');
      }
      await app.close();
      app = undefined;
    }
  });
});

describe.each(ADAPTERS)('trial24b: the Authorization header found in one pass, its scheme compared in place (%s)', (adapter) => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
  });
  afterAll(async () => {
    await app.close();
  });
  const raw = (lines: string[]) => sendRaw(app.url, `GET /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`);

  it('A12 A13 two Authorization headers in any case, the same token or another, a valid one first or last: 400 invalid_request, never admitted', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    for (const [a, b] of [['Authorization', 'authorization'], ['AUTHORIZATION', 'aUtHoRiZaTiOn'], ['authorization', 'Authorization']]) {
      for (const second of [`Bearer ${token}`, 'Bearer junk', 'Basic dXNlcjpwYXNz', '']) {
        const res = await raw([`${a}: Bearer ${token}`, `${b}: ${second}`]);
        expect(res.status).toBe(400);
        expect(res.text).toContain('error="invalid_request"');
        expect(res.text).not.toContain(token);
      }
    }
    expect(app.logger.lines.join('\n')).not.toContain(token);
  });

  it('H0a respelt schemes: any ASCII case is Bearer; non-ASCII look-alikes (UTF-8 bytes of Cyrillic, latin1 letters) are no credentials (401 without error), never admitted', async () => {
    const token = zone.issueToken({ scope: 'orders:read' });
    for (const scheme of ['bearer', 'BEARER', 'bEaReR']) expect((await raw([`Authorization: ${scheme} ${token}`])).status).toBe(200);
    const lookalikes = [
      Buffer.from('\u0412earer', 'utf8').toString('latin1'), // Cyrillic Ve, as its UTF-8 bytes
      Buffer.from('B\u0435arer', 'utf8').toString('latin1'), // Cyrillic ie
      'B\u00e9arer', 'Bearer\u00a0', '\u00c2earer', 'Bearerx', 'Beare',
    ];
    for (const scheme of lookalikes) {
      const res = await raw([`Authorization: ${scheme} ${token}`]);
      expect(res.status).toBe(401);
      expect(res.text).not.toContain('error=');
      expect(res.text).not.toContain(token);
    }
    expect(app.logger.lines.join('\n')).not.toContain(token);
  });
});

describe.each(ADAPTERS)('trial24b: DPoP routes, tokens outside b64token (%s)', (adapter) => {
  it.each(['allowed', 'required'] as const)('A11 A25 dpop %s: Bearer and DPoP schemes with a token outside b64token, with a proof header or none: 401 invalid_token token_malformed, no token anywhere', async (mode) => {
    const app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: mode });
    try {
      const valid = zone.issueToken({ scope: 'orders:read' });
      for (const scheme of ['Bearer', 'DPoP']) {
        for (const junk of ['ab"c', 'x y', `${valid}$`]) {
          for (const proof of [[], [['DPoP', 'not-a-proof']]] as [string, string][][]) {
            const before = app.logger.lines.length;
            const res = await send(app.url, 'GET', '/orders', [['Authorization', `${scheme} ${junk}`], ...proof]);
            expect(res.status).toBe(401);
            const challenge = String(res.headers['www-authenticate']);
            if (scheme === 'Bearer' && mode === 'required') {
              expect(challenge).not.toContain('error=');
              continue;
            }
            expect(challenge).toContain('error="invalid_token"');
            expect(app.logger.lines.slice(before).join('\n')).toContain('reason=token_malformed');
            expectNoLeak(res.text + challenge, [junk, valid], app.logger.lines);
          }
        }
      }
    } finally {
      await app.close();
    }
  });
});

describe.each(GRAPHQL_SERVERS)('trial24b: GraphQL over HTTP, tokens outside b64token (%s)', (_name, server) => {
  it('A11 A25 every field but the public one refused invalid_token (the @OptionalAuth() one too), one token_malformed denial, no token anywhere', async () => {
    const api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { providers: [MaybeResolver] });
    try {
      const valid = zone.issueToken({ scope: 'orders:read' });
      for (let i = 0; i < 3; i++) expect((await postGraphQL(api.url, '{ whoami }', valid)).body.data).toEqual({ whoami: expect.any(String) });
      for (const junk of ['ab"c', 'x y', `${valid}$`, `${valid},Bearer ${valid}`]) {
        const before = api.logger.lines.length;
        const res = await postGraphQL(api.url, '{ health maybe whoami }', junk);
        expect(res.body.data).toMatchObject({ health: 'ok', maybe: null, whoami: null });
        expect(res.body.errors).toHaveLength(2);
        for (const error of res.body.errors!) expect(error.extensions).toMatchObject({ error: 'invalid_token' });
        const denials = api.logger.lines.slice(before).filter((l) => l.startsWith('denied '));
        expect(denials).toHaveLength(1);
        expect(denials[0]).toContain('reason=token_malformed');
        expectNoLeak(res.body, [junk, valid], api.logger.lines);
      }
    } finally {
      await api.close();
    }
  });
});

describe.each(ADAPTERS)('trial24b: MCP endpoint, tokens outside b64token (%s)', (adapter) => {
  it('A11 A25 tools/call and tools/list with a token outside b64token: 401 invalid_token token_malformed, no tool runs, no token anywhere', async () => {
    const port = await freePort();
    const api = await startMcpApp({ adapter, zoneUrl: zone.issuer, port });
    try {
      const resource = `http://127.0.0.1:${port}/mcp`;
      const valid = zone.issueToken({ aud: resource, scope: 'mcp:tools admin', client_id: 'agent-7', sub: 'alice' });
      for (const junk of ['ab"c', 'x y', `${valid}$`, `${valid},Bearer ${valid}`]) {
        for (const body of [{ method: 'tools/call', params: { name: 'purge_orders', arguments: {} } }, { method: 'tools/call', params: { name: 'whoami', arguments: {} } }, { method: 'tools/list' }]) {
          const before = api.logger.lines.length;
          const res = await send(`${api.url}/mcp`, 'POST', '/mcp', [
            ['Content-Type', 'application/json'], ['Accept', 'application/json, text/event-stream'], ['MCP-Protocol-Version', '2025-06-18'],
            ['Authorization', `Bearer ${junk}`],
          ], JSON.stringify({ jsonrpc: '2.0', id: 7, ...body }));
          expect(res.status).toBe(401);
          expect(String(res.headers['www-authenticate'])).toContain('error="invalid_token"');
          expect(res.text).not.toContain('purged');
          expect(api.logger.lines.slice(before).join('\n')).toContain('reason=token_malformed');
          expectNoLeak(res.text, [junk, valid], api.logger.lines);
        }
      }
    } finally {
      await api.close();
    }
  });
});
