/**
 * Delegation chains (the policies issue item 3; catalogue T29 end to end): a service exchanges the
 * caller's token with the caller's token as `actor_token` (RFC 8693 §2.1), the zone names the
 * actor in `act`, nested for every earlier actor (§4.1: the outermost `act` is the current actor),
 * and the API at the end sees the chain in `AgentContext.actor` and bounds it with
 * `@RequireActors()`. Three real apps (two relaying services and the final API), the real
 * TestZone's token endpoint, `TokenExchangeService` with `actorToken`.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Headers, Module, Param, Query } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Access, Agent, Grant, KeycardModule, RequireActors, RequireScopes, TokenExchangeService, type AccessContext, type AgentContext, type TokenExchangeError } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { parseChallenge, send } from './support/http.js';
import { CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';

const SECRET = 'relay-secret-0123456789';
const FINAL = 'https://final.example.com';
/** Where each relay forwards to: resource → base URL of the app serving it (set once the apps listen). */
const ROUTES: Record<string, string> = {};

@Controller()
class FinalController {
  @Get('chain')
  @RequireScopes('orders:read')
  chain(@Agent() agent: AgentContext) {
    return { clientId: agent.clientId, subject: agent.subject, actor: agent.actor ?? null };
  }

  @Get('bounded')
  @RequireActors({ maxDepth: 1, allowed: ['agent-a'] })
  bounded() {
    return { ok: true };
  }
}

@Controller('relay')
class RelayController {
  constructor(private readonly exchange: TokenExchangeService) {}

  /** Exchanges the caller's token for `to` (the caller as actor unless `actor=none`) and calls `path` there. */
  @Get(':path')
  @RequireScopes('orders:read')
  async relay(@Headers('authorization') authorization: string, @Param('path') path: string, @Query('to') to: string, @Query('then') then?: string, @Query('actor') actor?: string) {
    const inbound = authorization.replace(/^Bearer /, '');
    const actorToken = actor === 'none' ? undefined : actor === 'forged' ? `${inbound.slice(0, -4)}AAAA` : inbound;
    let accessToken: string;
    try {
      ({ accessToken } = await this.exchange.exchange({ subjectToken: inbound, actorToken, resource: to, scope: 'orders:read' }));
    } catch (error) {
      return { exchangeError: (error as TokenExchangeError).code ?? null };
    }
    const query = then === undefined ? '' : `?to=${encodeURIComponent(then)}`;
    const res = await send(ROUTES[to], 'GET', path === 'relay' ? `/relay/chain${query}` : `/${path}${query}`, [['Authorization', `Bearer ${accessToken}`]]);
    return { status: res.status, body: res.json ?? null, challenge: res.headers['www-authenticate'] ?? null };
  }
}

/** `@Grant()` passing its caller on as actor, and one that does not (the default). */
@Controller('granted')
class GrantRelayController {
  @Get('as-caller')
  @RequireScopes('orders:read')
  @Grant(FINAL, 'orders:read', { actor: 'caller' })
  asCaller(@Access() access: AccessContext) {
    return forward(access);
  }

  @Get('map-as-caller')
  @RequireScopes('orders:read')
  @Grant({ [FINAL]: 'orders:read' }, { actor: 'caller' })
  mapAsCaller(@Access() access: AccessContext) {
    return forward(access);
  }

  @Get('plain')
  @RequireScopes('orders:read')
  @Grant(FINAL, 'orders:read')
  plain(@Access() access: AccessContext) {
    return forward(access);
  }
}

async function forward(access: AccessContext) {
  const res = await send(ROUTES[FINAL], 'GET', '/chain', [['Authorization', `Bearer ${access.access(FINAL).accessToken}`]]);
  return res.json;
}

describe('delegation chains: actor_token, act, @RequireActors', () => {
  let zone: TestZone;
  let final: RunningApp;
  const relays: { url: string; resource: string; close: () => Promise<void>; logger: CapturingLogger }[] = [];

  async function startRelay(clientId: string, resource: string) {
    const logger = new CapturingLogger();
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource, clientCredentials: { clientId, clientSecret: SECRET }, logger })], controllers: [RelayController, GrantRelayController] })
    class RelayModule {}
    const app = await NestFactory.create(RelayModule, { logger: false });
    await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    ROUTES[resource] = url;
    relays.push({ url, resource, logger, close: () => app.close() });
  }

  beforeAll(async () => {
    zone = await TestZone.start({
      resources: { 'https://relay-1.example.com': ['orders:read'], 'https://relay-2.example.com': ['orders:read'], [FINAL]: ['orders:read'] },
      clients: [{ clientId: 'relay-1', clientSecret: SECRET }, { clientId: 'relay-2', clientSecret: SECRET }],
    });
    final = await startApp('express', { zoneUrl: zone.issuer, resource: FINAL }, { controllers: [FinalController] });
    ROUTES[FINAL] = final.url;
    await startRelay('relay-1', 'https://relay-1.example.com');
    await startRelay('relay-2', 'https://relay-2.example.com');
  });
  afterAll(async () => {
    for (const relay of relays) await relay.close();
    await final?.close();
    await zone?.stop();
  });

  /** agent-a, acting for alice, calls relay-1. */
  const userToken = () => zone.issueToken({ aud: 'https://relay-1.example.com', sub: 'alice', client_id: 'agent-a', scope: 'orders:read' });
  const viaRelay1 = (path: string, query: string) => send(relays[0].url, 'GET', `/relay/${path}?${query}`, [['Authorization', `Bearer ${userToken()}`]]);

  it('T29 one hop: relay-1 exchanges with agent-a\'s token as actor_token; the final API sees client relay-1 for alice, acted for by agent-a; @RequireActors(maxDepth 1, agent-a) serves it', async () => {
    const chain = await viaRelay1('chain', `to=${encodeURIComponent(FINAL)}`);
    expect(chain.json).toEqual({ status: 200, challenge: null, body: { clientId: 'relay-1', subject: 'alice', actor: { subject: 'agent-a', clientId: 'agent-a' } } });
    const request = zone.tokenRequests.at(-1)!.form;
    expect({ actor_token_type: request.actor_token_type, subject_token_type: request.subject_token_type }).toEqual({
      actor_token_type: 'urn:ietf:params:oauth:token-type:access_token', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    });
    expect(((await viaRelay1('bounded', `to=${encodeURIComponent(FINAL)}`)).json as { status: number }).status).toBe(200);
  });

  it('T29 two hops: the chain nests (relay-1 outermost, then agent-a); @RequireActors refuses it with 403 insufficient_scope and no scope (depth 2, outermost relay-1 not allowed)', async () => {
    const relay2 = 'https://relay-2.example.com';
    const chain = await viaRelay1('relay', `to=${encodeURIComponent(relay2)}&then=${encodeURIComponent(FINAL)}`);
    expect(chain.json).toMatchObject({ status: 200, body: { status: 200, body: { clientId: 'relay-2', subject: 'alice', actor: { subject: 'relay-1', clientId: 'relay-1', actor: { subject: 'agent-a', clientId: 'agent-a' } } } } });
    const token = zone.issueToken({ aud: FINAL, sub: 'alice', client_id: 'relay-2', act: { sub: 'relay-1', act: { sub: 'agent-a' } } });
    const res = await send(final.url, 'GET', '/bounded', [['Authorization', `Bearer ${token}`]]);
    expect(res.status).toBe(403);
    expect(parseChallenge(res.headers['www-authenticate'])?.params).toEqual({
      error: 'insufficient_scope', error_description: 'The access token lacks a required permission', resource_metadata: `${FINAL}/.well-known/oauth-protected-resource`,
    });
    expect(final.logger.lines.some((line) => line.includes(token))).toBe(false);
  });

  it('T29 without actor_token the zone issues no act: the final API sees no actor, and @RequireActors({ allowed }) refuses', async () => {
    const chain = await viaRelay1('chain', `to=${encodeURIComponent(FINAL)}&actor=none`);
    expect(chain.json).toMatchObject({ status: 200, body: { clientId: 'relay-1', subject: 'alice', actor: null } });
    expect(((await viaRelay1('bounded', `to=${encodeURIComponent(FINAL)}&actor=none`)).json as { status: number }).status).toBe(403);
  });

  it('T29 the zone refuses an actor_token it did not issue (invalid_request): no token, no act; no token or secret reaches a log line', async () => {
    const res = await viaRelay1('chain', `to=${encodeURIComponent(FINAL)}&actor=forged`);
    expect(res.json).toEqual({ exchangeError: 'invalid_request' });
    for (const relay of relays) for (const line of relay.logger.lines) expect(line.includes(SECRET) || /eyJ[\w-]+\.eyJ/.test(line)).toBe(false);
  });

  it('T29 @Grant(…, { actor: "caller" }) sends the caller\'s token as actor_token: the final API sees agent-a as actor; a plain @Grant sends none', async () => {
    for (const path of ['as-caller', 'map-as-caller']) {
      const res = await send(relays[0].url, 'GET', `/granted/${path}`, [['Authorization', `Bearer ${userToken()}`]]);
      expect(res.json).toEqual({ clientId: 'relay-1', subject: 'alice', actor: { subject: 'agent-a', clientId: 'agent-a' } });
      expect(zone.tokenRequests.at(-1)!.form.actor_token_type).toBe('urn:ietf:params:oauth:token-type:access_token');
    }
    const plain = await send(relays[0].url, 'GET', '/granted/plain', [['Authorization', `Bearer ${userToken()}`]]);
    expect(plain.json).toEqual({ clientId: 'relay-1', subject: 'alice', actor: null });
    expect(zone.tokenRequests.at(-1)!.form.actor_token).toBeUndefined();
  });

  it('T29 @Grant rejects an unknown actor mode at startup', () => {
    expect(() => Grant(FINAL, 'orders:read', { actor: 'someone' as never })).toThrow(/@Grant: 'actor' must be 'caller'/);
  });
});
