/**
 * §T authorization policies over HTTP, on Express and Fastify: the scope hierarchy (T1–T7),
 * alternative paths (T8, T9), argument-dependent scopes (T13), optional authentication (T14, T16,
 * T17), claims (T18, T19), RFC 9470 step-up (T20–T23), offline_access and scopes_supported (T27,
 * T28) and the delegation chain (T29). Every refusal is asserted on its status, its parsed
 * challenge and that no token reached a log line.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, Get, HttpCode, Post, Query, type Type } from '@nestjs/common';
import {
  Agent, OptionalAuth, Public, RequireActors, RequireAuthentication, RequireClaims, RequireScopes, type AgentContext,
  type KeycardModuleOptions,
} from '../lib/index.js';
import { DecisionEvents, DpopKey, type DecisionEvent } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { forged } from './support/contexts.js';
import { dpopHeaders, expectDpopRefusal } from './support/dpop.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R, actChain, bearer } from './support/forge.js';
import { parseChallenge, send, type HttpAnswer } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

const HIERARCHY = { 'orders:write': ['orders:read'], 'orders:admin': ['orders:write', { prefix: 'orders:' }] };
const PERMISSION = 'The access token lacks a required permission';
const STEP_UP = 'A stronger or more recent user authentication is required';

@Controller()
class PolicyController {
  @Get('orders') @RequireScopes('orders:read') read(@Agent('clientId') by: string) { return { by }; }
  @Get('orders/write') @RequireScopes('orders:write') write() { return { ok: true }; }
  @Get('ordersx') @RequireScopes('ordersx:read') ordersx() { return { ok: true }; }
  @Get('billing') @RequireScopes('billing:read') billing() { return { ok: true }; }
  @Get('c') @RequireScopes('c') c() { return { ok: true }; }
  @Get('any') @RequireScopes.anyOf(['orders:read', 'orders:write'], ['orders:admin']) any() { return { ok: true }; }
  @Get('any-reversed') @RequireScopes.anyOf(['orders:admin'], ['orders:read', 'orders:write']) anyReversed() { return { ok: true }; }
  @Post('args') @HttpCode(200)
  @RequireScopes.fromArguments((args: { body?: { mode?: string } }) => {
    const mode = args.body?.mode;
    if (mode === 'throw') throw new Error('policy bug with secret-detail');
    if (mode === 'string') return 'repo:read' as unknown as string[];
    if (mode === 'offline') return ['offline_access'];
    return mode === 'private' ? ['repo:private'] : ['repo:read'];
  })
  args(@Body() body: unknown) { return { ran: true, body }; }
  // The docs' example (docs/policies.md, "Arguments the client controls"), over HTTP.
  @Get('repos')
  @RequireScopes.fromArguments(({ query }: { query: { visibility?: unknown } }) => (query.visibility === 'public' ? ['repo:read'] : ['repo:private']))
  repos(@Query('visibility') visibility: unknown) { return { visibility }; }
  @Get('greeting') @OptionalAuth() greeting(@Agent() agent?: AgentContext) { return { agent: agent === undefined ? null : { clientId: agent.clientId } }; }
  @Get('public') @Public() open(@Agent() agent?: AgentContext) { return { agent: agent ?? null }; }
  @Get('admin-role') @RequireClaims({ roles: { includes: 'admin' } }) adminRole() { return { ok: true }; }
  @Get('admin-role-scoped') @RequireClaims({ roles: { includes: 'admin' } }) @RequireScopes('orders:write') adminScoped() { return { ok: true }; }
  @Get('strong') @RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'] }) strong() { return { ok: true }; }
  @Get('recent') @RequireAuthentication({ maxAge: 300 }) recent() { return { ok: true }; }
  @Get('strong-recent-write') @RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'], maxAge: 300 }) @RequireScopes('orders:write') strongRecentWrite() { return { ok: true }; }
  @Get('delegated') @RequireActors({ maxDepth: 1, allowed: ['agent-b'] }) delegated() { return { ok: true }; }
  @Get('delegated-deep') @RequireActors({ maxDepth: 9 }) delegatedDeep() { return { ok: true }; }
  @Get('undelegated') @RequireActors({ maxDepth: 0 }) undelegated() { return { ok: true }; }
  // No policy at all: what an app reads for its audit or its own checks.
  @Get('actor') actor(@Agent('actor') actor?: unknown) { return { actor: actor ?? null }; }
}

@RequireScopes('mcp:tools')
@Controller('tools')
class ClassScopedController {
  @Get('repo') @RequireScopes.anyOf(['repo:read'], ['repo:admin']) repo() { return { ok: true }; }
}

/** A 403 `insufficient_scope` without `scope` (Q27). */
function expectPermissionRefusal(res: HttpAnswer): void {
  expect(res.status).toBe(403);
  const challenge = parseChallenge(res.headers['www-authenticate'])!;
  expect(challenge.scheme).toBe('Bearer');
  expect(challenge.params).toEqual({ error: 'insufficient_scope', error_description: PERMISSION, resource_metadata: PRM });
  expect(res.json).toEqual({ error: 'insufficient_scope', error_description: PERMISSION });
}

/** A 401 SU(acr, maxAge) (catalogue §0), with `scope` when given. */
function expectStepUp(res: HttpAnswer, step: { acr?: string; maxAge?: string; scope?: string }): void {
  expect(res.status).toBe(401);
  const challenge = parseChallenge(res.headers['www-authenticate'])!;
  const expected: Record<string, string> = { error: 'insufficient_user_authentication', error_description: STEP_UP };
  if (step.acr !== undefined) expected.acr_values = step.acr;
  if (step.maxAge !== undefined) expected.max_age = step.maxAge;
  if (step.scope !== undefined) expected.scope = step.scope;
  expected.resource_metadata = PRM;
  expect(challenge.params).toEqual(expected);
  expect(challenge.names).toEqual(Object.keys(expected)); // RFC 9470 §3 order, each once (INV1)
}

/** How many links an `AgentContext.actor` (as JSON) has. */
function depthOf(actor: unknown): number {
  let depth = 0;
  for (let link = actor as { actor?: unknown } | undefined; link !== undefined; link = link.actor as typeof link) depth++;
  return depth;
}

describe.each(ADAPTERS)('§T policies over HTTP (%s)', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let plain: RunningApp;
  const issued: string[] = [];
  const token = (claims: Record<string, unknown>) => {
    const t = zone.issueToken(claims);
    issued.push(t);
    return t;
  };
  const get = (app: RunningApp, path: string, t?: string) => send(app.url, 'GET', path, t === undefined ? [] : bearer(t));
  const start = (options: Partial<KeycardModuleOptions> = {}, controllers: Type[] = [PolicyController, ClassScopedController]) =>
    startApp(adapter, { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 60, ...options }, { controllers });

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await start({ scopeHierarchy: HIERARCHY });
    plain = await start();
  });
  afterAll(async () => {
    for (const app of [api, plain]) await app?.close();
    await zone?.stop();
    const lines = [...(api?.logger.lines ?? []), ...(plain?.logger.lines ?? [])];
    for (const t of issued) expect(lines.some((line) => line.includes(t.split('.')[2]!))).toBe(false);
  });

  it('T1 orders:write and orders:admin satisfy orders:read; orders:read does not satisfy orders:write (no downward implication)', async () => {
    expectOutcome(await get(api, '/orders', token({ scope: 'orders:write' })), '200', PRM);
    expectOutcome(await get(api, '/orders', token({ scope: 'orders:admin' })), '200', PRM);
    expectOutcome(await get(api, '/orders/write', token({ scope: 'orders:read' })), '403:orders:write', PRM);
  });

  it('T2 the closure is computed at bootstrap: a → b → c, token a satisfies c', async () => {
    const app = await start({ scopeHierarchy: { a: ['b'], b: ['c'] } });
    try {
      expectOutcome(await get(app, '/c', token({ scope: 'a' })), '200', PRM);
    } finally {
      await app.close();
    }
  });

  it('T3 a prefix matches from its start only, and ends with its delimiter', async () => {
    const admin = token({ scope: 'orders:admin' });
    expectOutcome(await get(api, '/orders', admin), '200', PRM);
    expectOutcome(await get(api, '/ordersx', admin), '403:ordersx:read', PRM);
    expectOutcome(await get(api, '/billing', admin), '403:billing:read', PRM);
  });

  it.each([
    [{ x: [{ prefix: 'orders' }] }, /\{ prefix: "orders" \}.*must end with a delimiter/],
    [{ x: [{ prefix: '' }] }, /\{ prefix: "" \}.*empty prefix/],
    [{ '*': ['a'] }, /'\*'.*wildcard/],
    [{ a: ['b'], b: ['a'] }, /'a' → 'b' → 'a'.*cycle/],
    [{ a: ['offline_access'] }, /offline_access/],
  ])('T4 bootstrap fails for scopeHierarchy %j, naming the entry and the rule', async (scopeHierarchy, message) => {
    await expect(start({ scopeHierarchy: scopeHierarchy as KeycardModuleOptions['scopeHierarchy'] })).rejects.toThrow(message);
  });

  it('T5 without a hierarchy, orders:*, * and orders:write never satisfy orders:read', async () => {
    for (const scope of ['orders:*', '*', 'orders:write']) {
      expectOutcome(await get(plain, '/orders', token({ scope })), '403:orders:read', PRM);
    }
  });

  it('T6 the challenge names the required scope, never a broader one', async () => {
    expectOutcome(await get(api, '/orders', token({ scope: 'profile' })), '403:orders:read', PRM);
  });

  it('T8 anyOf: a satisfied path admits; otherwise the path sharing the most scopes, else the first declared, is named', async () => {
    expectOutcome(await get(api, '/any', token({ scope: 'orders:admin' })), '200', PRM);
    expectOutcome(await get(api, '/any', token({ scope: 'orders:read orders:write' })), '200', PRM);
    expectOutcome(await get(plain, '/any', token({ scope: 'orders:read' })), '403:orders:read orders:write', PRM);
    expectOutcome(await get(plain, '/any', token({ scope: 'profile' })), '403:orders:read orders:write', PRM);
    expectOutcome(await get(plain, '/any'), '401∅ scope=orders:read orders:write', PRM);
    expectOutcome(await get(plain, '/any-reversed', token({ scope: 'orders:read' })), '403:orders:read orders:write', PRM);
    expectOutcome(await get(plain, '/any-reversed', token({ scope: 'profile' })), '403:orders:admin', PRM);
  });

  it('T9 class scopes first, then the chosen path, in one challenge', async () => {
    expectOutcome(await get(plain, '/tools/repo', token({ scope: 'mcp:tools' })), '403:mcp:tools repo:read', PRM);
    expectOutcome(await get(plain, '/tools/repo', token({ scope: 'mcp:tools repo:admin' })), '200', PRM);
  });

  it('T13 an argument function that throws, returns a non-array or offline_access: 500 with a fixed body, the handler never runs, one error line naming the handler', async () => {
    const t = token({ scope: 'repo:read repo:private' });
    const json: [string, string] = ['Content-Type', 'application/json'];
    const ok = await send(plain.url, 'POST', '/args', [...bearer(t), json], '{"mode":"public"}');
    expect(ok.json).toEqual({ ran: true, body: { mode: 'public' } });
    for (const mode of ['throw', 'string', 'offline']) {
      const before = plain.logger.lines.length;
      const res = await send(plain.url, 'POST', '/args', [...bearer(t), json], JSON.stringify({ mode }));
      expect(res.status).toBe(500);
      expect(res.json).toEqual({ error: 'server_error', error_description: 'The request could not be authorized' });
      expect(res.text).not.toContain('ran');
      const named = plain.logger.lines.slice(before).filter((line) => line.includes('PolicyController.args'));
      expect(named).toHaveLength(1);
      expect(named[0]).not.toContain('secret-detail');
    }
    const missing = await send(plain.url, 'POST', '/args', [...bearer(token({ scope: 'repo:read' })), json], '{"mode":"private"}');
    expectOutcome(missing, '403:repo:private', PRM);
  });

  it('T10 over HTTP, the documented allow-list: only the exact string public gets repo:read; a repeated or nested query parameter needs repo:private', async () => {
    const t = token({ scope: 'repo:read' });
    expectOutcome(await get(plain, '/repos?visibility=public', t), '200', PRM);
    for (const query of ['visibility=public&visibility=private', 'visibility=private&visibility=public', 'visibility[a]=private', 'visibility=PRIVATE', 'visibility=private%00', '']) {
      expectOutcome(await get(plain, `/repos?${query}`, t), '403:repo:private', PRM);
    }
    expectOutcome(await get(plain, '/repos?visibility=public&visibility=private', token({ scope: 'repo:private' })), '200', PRM);
  });

  it('T14 @OptionalAuth(): anonymous without a token or with another scheme; a verified agent; forged, expired, foreign-audience tokens 401 IT; two tokens 400 IR', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect((await get(api, '/greeting')).json).toEqual({ agent: null });
    expect((await get(api, '/greeting', token({}))).json).toEqual({ agent: { clientId: 'cli-1' } });
    expectOutcome(await get(api, '/greeting', forged(token({}))), '401 IT', PRM);
    expectOutcome(await get(api, '/greeting', token({ iat: now - 1000, exp: now - 500 })), '401 IT', PRM);
    expectOutcome(await get(api, '/greeting', token({ aud: 'https://other.example.com' })), '401 IT', PRM);
    const two = await send(api.url, 'GET', '/greeting', [...bearer(token({})), ...bearer(token({}))]);
    expectOutcome(two, '400 IR', PRM);
    const basic = await send(api.url, 'GET', '/greeting', [['Authorization', 'Basic dXNlcjpwYXNz']]);
    expect({ status: basic.status, json: basic.json }).toEqual({ status: 200, json: { agent: null } });
  });

  it('T14 every credential the module reads on HTTP is judged on an @OptionalAuth() route (the DPoP scheme when DPoP is on); what it never reads (a query parameter, a scheme it does not accept) is no token', async () => {
    const bad = forged(token({}));
    const anonymous = async (res: Promise<HttpAnswer>) => {
      const answer = await res;
      expect({ status: answer.status, json: answer.json, challenge: answer.headers['www-authenticate'] }).toEqual({ status: 200, json: { agent: null }, challenge: undefined });
    };
    // DPoP off: the DPoP scheme is an unsupported scheme (Q11), like Basic (Q26); the query method is never read (§0).
    await anonymous(send(api.url, 'GET', '/greeting', [['Authorization', `DPoP ${bad}`]]));
    await anonymous(send(api.url, 'GET', `/greeting?access_token=${bad}`, []));
    const key = DpopKey.generate('ES256');
    const dpop = await start({ dpop: 'allowed' });
    const required = await start({ dpop: 'required' });
    try {
      const bound = zone.tokenFor({ dpopKey: key });
      issued.push(bound);
      const served = await send(dpop.url, 'GET', '/greeting', dpopHeaders(key, bound, { path: '/greeting' }));
      expect({ status: served.status, json: served.json }).toEqual({ status: 200, json: { agent: { clientId: 'cli-1' } } });
      expectDpopRefusal(await send(dpop.url, 'GET', '/greeting', dpopHeaders(key, bad, { path: '/greeting' })), { dpopError: 'invalid_token', prm: PRM, secrets: [bad], logs: dpop.logger.lines });
      expectDpopRefusal(await send(dpop.url, 'GET', '/greeting', dpopHeaders(key, bound, { path: '/other' })), { dpopError: 'invalid_dpop_proof', prm: PRM, secrets: [bound], logs: dpop.logger.lines });
      // A DPoP-bound token under the Bearer scheme is a token the module reads: refused (Q10).
      expectDpopRefusal(await get(dpop, '/greeting', bound), { bearerError: 'invalid_token', prm: PRM, secrets: [bound], logs: dpop.logger.lines });
      // dpop: 'required' accepts only the DPoP scheme (Q40): a Bearer header there is no token, as Basic is.
      await anonymous(get(required, '/greeting', bad));
      expectDpopRefusal(await send(required.url, 'GET', '/greeting', dpopHeaders(key, bad, { path: '/greeting' })), { dpopError: 'invalid_token', bearer: false, prm: PRM, secrets: [bad], logs: required.logger.lines });
    } finally {
      await dpop.close();
      await required.close();
    }
  });

  it('T15 @OptionalAuth() with a valid token and the JWKS unreachable (cold cache): 200 anonymous, audit reason zone_unavailable, no claim of the token used', async () => {
    const down = await TestZone.start({ audience: R });
    down.faults.jwks = { kind: 'status', status: 500 };
    const app = await startApp(adapter, { zoneUrl: down.issuer, resource: R, auditLog: true }, { controllers: [PolicyController] });
    try {
      const events: DecisionEvent[] = [];
      app.app.get(DecisionEvents).subscribe((event) => events.push(event));
      const t = down.issueToken({ client_id: 'agent-unverified' });
      const res = await get(app, '/greeting', t);
      expect({ status: res.status, json: res.json, challenge: res.headers['www-authenticate'] }).toEqual({ status: 200, json: { agent: null }, challenge: undefined });
      const audit = app.logger.lines.filter((line) => line.startsWith('{"event":"keycard.audit"')).map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(audit).toEqual([expect.objectContaining({ status: 200, reason: 'zone_unavailable' })]);
      // Every observer learns why, from the event itself (the audit line reads it there): admitted, no agent, no reason of a refusal.
      expect(events).toEqual([expect.objectContaining({ type: 'admitted', status: 200, detail: 'zone_unavailable', public: true })]);
      expect({ reason: events[0]?.reason, performedBy: events[0]?.performedBy, agent: events[0]?.agent }).toEqual({ reason: undefined, performedBy: undefined, agent: undefined });
      expect(app.logger.lines.join('\n')).not.toContain('agent-unverified');
      expect(app.logger.lines.join('\n')).not.toContain(t.split('.')[2]);
      expectOutcome(await get(app, '/orders', t), '503 RA', PRM); // a required route still answers 503
    } finally {
      await app.close();
      await down.stop();
    }
  });

  it.each([
    ['@OptionalAuth() and @RequireScopes()', (c: object) => { OptionalAuth()(c as never); RequireScopes('a')(c as never); }, /@OptionalAuth\(\) and @RequireScopes\(\) are both declared on Contradiction \(handler Contradiction\.handler\)/],
    ['@OptionalAuth() and @Public()', (c: object) => { OptionalAuth()(c as never); Public()(c as never); }, /@Public\(\) and @OptionalAuth\(\) are both declared on Contradiction \(handler Contradiction\.handler\)/],
  ])('T16 %s on one target fail the bootstrap, naming the handler', async (_name, decorate, message) => {
    @Controller('contradiction')
    class Contradiction {
      @Get() handler() { return {}; }
    }
    decorate(Contradiction);
    await expect(start({}, [Contradiction])).rejects.toThrow(message);
  });

  it('T17 @Public(): a forged token is ignored', async () => {
    const res = await get(api, '/public', forged(token({})));
    expect({ status: res.status, json: res.json }).toEqual({ status: 200, json: { agent: null } });
  });

  it('T18 @RequireClaims roles includes admin: an array with it passes; else 403 insufficient_scope without scope', async () => {
    expectOutcome(await get(api, '/admin-role', token({ roles: ['admin', 'user'] })), '200', PRM);
    expectPermissionRefusal(await get(api, '/admin-role', token({ roles: ['user'] })));
    expectPermissionRefusal(await get(api, '/admin-role', token({ roles: 'admin' })));
    expectPermissionRefusal(await get(api, '/admin-role', token({})));
    expectPermissionRefusal(await get(api, '/admin-role', token(JSON.parse('{"__proto__":{"roles":["admin"]}}') as Record<string, unknown>)));
  });

  it('T19 a failing claim and a missing scope: one 403 naming the scopes', async () => {
    expectOutcome(await get(api, '/admin-role-scoped', token({ roles: ['user'], scope: 'orders:read' })), '403:orders:write', PRM);
  });

  it('T20 acr: another value or none → 401 SU(acr_values); an accepted one → 200; a non-string → 401 IT', async () => {
    expectStepUp(await get(api, '/strong', token({ acr: 'urn:kc:pwd' })), { acr: 'urn:kc:mfa urn:kc:phr' });
    expectStepUp(await get(api, '/strong', token({})), { acr: 'urn:kc:mfa urn:kc:phr' });
    expectOutcome(await get(api, '/strong', token({ acr: 'urn:kc:phr' })), '200', PRM);
    expectOutcome(await get(api, '/strong', token({ acr: 42 })), '401 IT', PRM);
  });

  it('T21 maxAge 300 with a 60 s leeway: auth_time 200 s and 359 s ago pass; 361 s ago or absent → 401 SU(max_age); a string or 61 s ahead → 401 IT', async () => {
    api.clock.frozenAtMs = Date.now();
    try {
      const now = Math.floor(api.clock.frozenAtMs / 1000);
      expectOutcome(await get(api, '/recent', token({ auth_time: now - 200 })), '200', PRM);
      expectOutcome(await get(api, '/recent', token({ auth_time: now - 359 })), '200', PRM);
      expectStepUp(await get(api, '/recent', token({ auth_time: now - 361 })), { maxAge: '300' });
      expectStepUp(await get(api, '/recent', token({})), { maxAge: '300' });
      expectOutcome(await get(api, '/recent', token({ auth_time: '1700000000' })), '401 IT', PRM);
      expectOutcome(await get(api, '/recent', token({ auth_time: now + 61 })), '401 IT', PRM);
    } finally {
      api.clock.frozenAtMs = undefined;
    }
  });

  it('T22 weak, old sign-in and a missing scope: one 401 with acr_values, max_age and scope', async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await get(api, '/strong-recent-write', token({ acr: 'urn:kc:pwd', auth_time: now - 900, scope: 'orders:read' }));
    expectStepUp(res, { acr: 'urn:kc:mfa urn:kc:phr', maxAge: '300', scope: 'orders:write' });
  });

  it('T23 step-up route: no token → 401∅ with the scope hint only; an expired token → 401 IT without step-up parameters', async () => {
    expectOutcome(await get(api, '/strong-recent-write'), '401∅ scope=orders:write', PRM);
    const now = Math.floor(Date.now() / 1000);
    expectOutcome(await get(api, '/strong-recent-write', token({ acr: 'urn:kc:pwd', iat: now - 1000, exp: now - 500 })), '401 IT scope=orders:write', PRM);
  });

  it('T27 offline_access in @RequireScopes, in an anyOf path or in scopesSupported fails the bootstrap; a token carrying it is served', async () => {
    @Controller('offline') class Offline { @Get() @RequireScopes('offline_access') get() { return {}; } }
    @Controller('offline-any') class OfflineAny { @Get() @RequireScopes.anyOf(['a'], ['offline_access']) get() { return {}; } }
    await expect(start({}, [Offline])).rejects.toThrow(/Offline\.get requires offline_access/);
    await expect(start({}, [OfflineAny])).rejects.toThrow(/OfflineAny\.get requires offline_access/);
    await expect(start({ scopesSupported: ['offline_access', 'a'] })).rejects.toThrow(/'scopesSupported' contains offline_access/);
    expectOutcome(await get(api, '/orders', token({ scope: 'orders:read offline_access' })), '200', PRM);
    const prm = await get(api, '/.well-known/oauth-protected-resource');
    expect(JSON.stringify(prm.json)).not.toContain('offline_access');
  });

  it('T28 scopes_supported: every declared static scope by default (never argument-derived or implied ones); exactly the baseline when configured', async () => {
    const prm = (await get(plain, '/.well-known/oauth-protected-resource')).json as { scopes_supported: string[] };
    expect(new Set(prm.scopes_supported)).toEqual(new Set([
      'orders:read', 'orders:write', 'ordersx:read', 'billing:read', 'c', 'orders:admin', 'mcp:tools', 'repo:read', 'repo:admin',
    ]));
    const app = await start({ baselineScopes: ['mcp:tools'] });
    try {
      expect(((await get(app, '/.well-known/oauth-protected-resource')).json as { scopes_supported: string[] }).scopes_supported).toEqual(['mcp:tools']);
      expectOutcome(await get(app, '/tools/repo', token({ scope: 'mcp:tools' })), '403:mcp:tools repo:read', PRM);
    } finally {
      await app.close();
    }
  });

  it('T29 delegation chain: maxDepth 1, allowed agent-b on the outermost actor', async () => {
    expectOutcome(await get(api, '/delegated', token({ act: { sub: 'agent-b' } })), '200', PRM);
    expectPermissionRefusal(await get(api, '/delegated', token({ act: { sub: 'agent-z' } })));
    expectPermissionRefusal(await get(api, '/delegated', token({ act: { sub: 'agent-b', act: { sub: 'agent-c' } } })));
  });

  it('T29 the chain is judged as the token carries it (an attack trial): a link that is no object is a malformed token, never a shorter chain; a chain deeper than any bound is counted whole', async () => {
    for (const inner of ['agent-c', null, [{ sub: 'agent-c' }], 42]) {
      expectOutcome(await get(api, '/delegated', token({ act: { sub: 'agent-b', act: inner } })), '401 IT', PRM);
    }
    for (const act of ['agent-b', null, [{ sub: 'agent-b' }]]) {
      expectOutcome(await get(api, '/undelegated', token({ act })), '401 IT', PRM);
    }
    expectOutcome(await get(api, '/delegated-deep', token({ act: actChain(9) })), '200', PRM);
    expectPermissionRefusal(await get(api, '/delegated-deep', token({ act: actChain(10) })));
    expectPermissionRefusal(await get(api, '/delegated-deep', token({ act: actChain(32) })));
    expectOutcome(await get(api, '/delegated-deep', token({ act: actChain(40) })), '401 IT', PRM); // past the bound: no chain to count
    expectOutcome(await get(api, '/undelegated', token({})), '200', PRM);
  });

  it('T29 AgentContext.actor is the chain the token carries, link for link up to 32; a malformed link (C19/C20 typing) or a deeper chain is 401 IT on every route, never a shorter chain', async () => {
    const seen = async (act: unknown) => {
      const res = await get(api, '/actor', token({ act }));
      expectOutcome(res, '200', PRM);
      return (res.json as { actor: unknown }).actor;
    };
    expect(await seen({ sub: 'agent-b', client_id: 'relay-1', act: { sub: 'agent-a', act: {} } })).toEqual({
      subject: 'agent-b', clientId: 'relay-1', actor: { subject: 'agent-a', actor: {} },
    });
    expect(depthOf(await seen(actChain(32)))).toBe(32);
    expect((await get(api, '/actor', token({}))).json).toEqual({ actor: null });
    const malformed: unknown[] = [
      'agent-b', null, 42, true, [{ sub: 'agent-b' }], // `act` itself is not a JSON object (RFC 8693 §4.1)
      { sub: 42 }, { sub: '' }, { sub: ['agent-b'] }, { client_id: 7 }, { sub: 'agent-b', client_id: { id: 'x' } }, // C19/C20
      { sub: 'agent-b', act: 'agent-c' }, { sub: 'agent-b', act: null }, { sub: 'agent-b', act: [{ sub: 'agent-c' }] },
      { sub: 'agent-b', act: { sub: 'agent-c', act: { sub: false } } },
      actChain(33), actChain(200),
    ];
    for (const act of malformed) {
      expectOutcome(await get(api, '/actor', token({ act })), '401 IT', PRM);
      expectOutcome(await get(api, '/public', token({ act })), '200', PRM); // @Public() ignores the token (T17)
    }
  });
});

