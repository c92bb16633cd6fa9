/**
 * T31: zones whose access tokens are JWTs but not RFC 9068 profiles. Keycloak and Entra ID v2 name
 * the client in `azp`, Entra ID v1 in `appid`, Okta in `cid`; Auth0's default profile and Entra ID
 * carry no `jti`. The `claimMapping` option says which claim names the agent and whether `jti` is
 * required; without it RFC 9068 stays strict (catalogue C20, C21 unchanged). Real apps on both
 * adapters, tokens signed by a real TestZone, every refusal asserted on its challenge and the logs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get } from '@nestjs/common';
import { Agent, RequireScopes, type AgentContext, type KeycardModuleOptions } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

@Controller()
class WhoController {
  @Get('who')
  @RequireScopes('orders:read')
  who(@Agent() agent: AgentContext) {
    return { clientId: agent.clientId, agentId: agent.agentId, subject: agent.subject, tokenId: agent.tokenId ?? null };
  }
}

describe.each(ADAPTERS)('T31 claim mapping over %s', (adapter) => {
  let zone: TestZone;
  const apps: RunningApp[] = [];
  let strict: RunningApp;
  let keycloak: RunningApp;
  let auth0: RunningApp;
  const start = async (options: Partial<KeycardModuleOptions> = {}) => {
    const app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, ...options }, { controllers: [WhoController] });
    apps.push(app);
    return app;
  };
  /** A Keycloak-style token: the client in `azp`, no `client_id`, typed `JWT`. */
  const keycloakToken = (claims: Record<string, unknown> = {}) =>
    zone.issueToken({ client_id: undefined, azp: 'kc-agent', sub: 'alice', scope: 'orders:read', ...claims }, { header: { typ: 'JWT' } });
  const who = (app: RunningApp, token: string) => send(app.url, 'GET', '/who', [['Authorization', `Bearer ${token}`]]);

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    strict = await start();
    keycloak = await start({ claimMapping: { agent: 'azp' } });
    auth0 = await start({ claimMapping: { agent: 'azp', requireJti: false } });
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await zone?.stop();
  });

  it('T31 with claimMapping { agent: "azp" }: a Keycloak-style token is served, agent.clientId from azp', async () => {
    const token = keycloakToken();
    const res = await who(keycloak, token);
    expectOutcome(res, '200', PRM, [token], keycloak.logger.lines);
    expect(res.json).toMatchObject({ clientId: 'kc-agent', agentId: 'kc-agent', subject: 'alice', tokenId: expect.any(String) });
  });

  it('T31 without the mapping: the same token → 401 IT (C20 unchanged), the challenge names the route scope', async () => {
    const token = keycloakToken();
    expectOutcome(await who(strict, token), '401 IT scope=orders:read', PRM, [token], strict.logger.lines);
  });

  it('T31 the mapping is explicit: with agent "azp", client_id is never read instead (no azp → 401 IT), and a non-string azp → 401 IT', async () => {
    for (const token of [zone.issueToken({ client_id: 'cli-1', scope: 'orders:read' }), keycloakToken({ azp: 7 }), keycloakToken({ azp: '' })]) {
      expectOutcome(await who(keycloak, token), '401 IT scope=orders:read', PRM, [token], keycloak.logger.lines);
    }
  });

  it('T31 keycard_app_id still names the stable agent under a mapping', async () => {
    const res = await who(keycloak, keycloakToken({ keycard_app_id: 'app-7' }));
    expect(res.json).toMatchObject({ clientId: 'kc-agent', agentId: 'app-7' });
  });

  it('T31 jti stays required by default (C21) under a mapping; requireJti: false serves an Auth0-style token without jti (tokenId absent), and still refuses a jti that is not a string', async () => {
    const withoutJti = keycloakToken({ jti: undefined });
    expectOutcome(await who(keycloak, withoutJti), '401 IT scope=orders:read', PRM, [withoutJti], keycloak.logger.lines);
    const served = await who(auth0, withoutJti);
    expectOutcome(served, '200', PRM, [withoutJti], auth0.logger.lines);
    expect(served.json).toMatchObject({ clientId: 'kc-agent', tokenId: null });
    for (const jti of [7, '', null]) {
      const token = keycloakToken({ jti });
      expectOutcome(await who(auth0, token), '401 IT scope=orders:read', PRM, [token], auth0.logger.lines);
    }
  });

  it.each([
    ['Entra ID v1', 'appid'],
    ['Okta', 'cid'],
  ])('T31 %s: claimMapping { agent: "%s" } serves its tokens', async (_name, claim) => {
    const app = await start({ claimMapping: { agent: claim, requireJti: false } });
    const token = zone.issueToken({ client_id: undefined, jti: undefined, [claim]: 'their-agent', scope: 'orders:read' }, { header: { typ: 'JWT' } });
    const res = await who(app, token);
    expectOutcome(res, '200', PRM, [token], app.logger.lines);
    expect(res.json).toMatchObject({ clientId: 'their-agent' });
  });
});

describe('T31 claimMapping is checked at bootstrap', () => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  it.each([
    [{ agent: '' }, /'claimMapping\.agent' must be a non-empty claim name/],
    [{ agent: 7 }, /'claimMapping\.agent' must be a non-empty claim name/],
    [{ agent: 'sub' }, /'claimMapping\.agent' cannot be 'sub'/],
    [{ agent: '__proto__' }, /'claimMapping\.agent' cannot be '__proto__'/],
    [{ agent: 'azp', requireJti: 'no' }, /'claimMapping\.requireJti' must be a boolean/],
    [{ agnt: 'azp' }, /'claimMapping\.agnt' is not an option: did you mean 'agent'\?/],
    ['azp', /'claimMapping' must be an object/],
  ])('T31 claimMapping %j fails the bootstrap naming the entry', async (claimMapping, message) => {
    await expect(startApp('express', { zoneUrl: zone.issuer, resource: R, claimMapping: claimMapping as never })).rejects.toThrow(message);
  });
});
