/**
 * The whole delegation story over HTTP: a user calls an agent backend with a token for the agent;
 * the backend exchanges it for a token scoped to the orders API and calls that API, which sees the
 * agent as `clientId` and the user as `subject`. Failed exchanges answer per catalogue Q8.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Headers, Module, Query } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { KeycardModule, RequireScopes, TokenExchangeService } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { R } from './support/forge.js';
import { parseChallenge, send } from './support/http.js';
import { CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';

const AGENT = 'https://agent.example.com';
const AGENT_PRM = `${AGENT}/.well-known/oauth-protected-resource`;
const SECRET = 'agent-a-secret-123456';

describe('exchange to API', () => {
  let zone: TestZone;
  let api: RunningApp;
  let backend: { url: string; close: () => Promise<unknown>; logger: CapturingLogger };

  beforeAll(async () => {
    zone = await TestZone.start({
      audience: AGENT,
      resources: { [R]: ['orders:read', 'orders:write'] },
      clients: [{ clientId: 'agent-a', clientSecret: SECRET }],
    });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R });
    const ordersApi = api.url;

    @Controller('proxy')
    class ProxyController {
      constructor(private readonly exchange: TokenExchangeService) {}

      @Get('orders')
      @RequireScopes('agent:use')
      async orders(@Headers('authorization') authorization: string, @Query('scope') scope = 'orders:read') {
        const { accessToken } = await this.exchange.exchange({ subjectToken: authorization.slice(7), resource: R, scope });
        const res = await fetch(`${ordersApi}/orders`, { headers: { authorization: `Bearer ${accessToken}` } });
        return { status: res.status, body: await res.json() };
      }
    }
    const logger = new CapturingLogger();
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: AGENT, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET }, logger })],
      controllers: [ProxyController],
    })
    class BackendModule {}
    const app = await NestFactory.create(BackendModule, { logger: false });
    await app.listen(0, '127.0.0.1');
    backend = { url: `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`, close: () => app.close(), logger };
  });
  afterEach(() => zone.reset());
  afterAll(async () => {
    await backend?.close();
    await api?.close();
    await zone?.stop();
  });

  const userToken = () => zone.issueToken({ sub: 'alice', client_id: 'user-app', sid: 'sess-7', scope: 'agent:use' });
  const callBackend = (token = userToken(), query = '') => send(backend.url, 'GET', `/proxy/orders${query}`, [['Authorization', `Bearer ${token}`]]);

  it('the exchanged token is accepted by the API, which sees the agent and the user', async () => {
    const res = await callBackend();
    expect(res.status).toBe(200);
    const { status, body } = res.json as { status: number; body: { agent: Record<string, unknown> } };
    expect(status).toBe(200);
    expect(body.agent).toMatchObject({ clientId: 'agent-a', subject: 'alice', sessionId: 'sess-7', scopes: ['orders:read'], audience: [R] });
  });

  it('a scope the agent may not have → invalid_scope → 500 for the caller (I15), logged once per interval however often it recurs, without secrets', async () => {
    const token = userToken();
    for (let i = 0; i < 3; i++) {
      const res = await callBackend(token, '?scope=orders:delete');
      expect(res.status).toBe(500);
      expect(res.json).toEqual({ error: 'server_error', error_description: 'The service is misconfigured' });
    }
    const logged = backend.logger.lines.filter((l) => l.includes('Token exchange failed (oauth invalid_scope)'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('this error is logged once per 1 min');
    for (const line of backend.logger.lines) expect(line.includes(token) || line.includes(SECRET)).toBe(false);
  });

  it('I13 invalid_grant → 401 invalid_token with the backend resource metadata, described as not active (the zone refused a well-formed token)', async () => {
    zone.faults.token = { kind: 'status', status: 400, body: '{"error":"invalid_grant"}' };
    const res = await callBackend();
    expectOutcome(res, '401 IT', AGENT_PRM);
    expect(res.json).toEqual({ error: 'invalid_token', error_description: 'The access token is not active' });
    expect(parseChallenge(res.headers['www-authenticate'])?.params.error_description).toBe('The access token is not active');
  });

  it('I14 invalid_request → 403 with a challenge without error code', async () => {
    zone.faults.token = { kind: 'status', status: 400, body: '{"error":"invalid_request"}' };
    const res = await callBackend();
    expect(res.status).toBe(403);
    expect(parseChallenge(res.headers['www-authenticate'])?.params).toEqual({ resource_metadata: AGENT_PRM });
  });

  it('I17 500 twice → 502', async () => {
    zone.faults.token = { kind: 'status', status: 500 };
    expect((await callBackend()).status).toBe(502);
  });

  it('I18 503 with a long Retry-After → 503 with Retry-After', async () => {
    zone.faults.token = { kind: 'status', status: 503, headers: { 'retry-after': '120' } };
    const res = await callBackend();
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('120');
  });

  it('I18 a zone asking for days (Retry-After: 999999, or as an HTTP date a week ahead) → 503 whose Retry-After is capped at 300 s', async () => {
    for (const retryAfter of ['999999', new Date(Date.now() + 7 * 86_400_000).toUTCString()]) {
      zone.faults.token = { kind: 'status', status: 503, headers: { 'retry-after': retryAfter } };
      const res = await callBackend();
      expect(res.status).toBe(503);
      expect(res.json).toEqual({ error: 'temporarily_unavailable', error_description: 'The authorization server is unavailable, retry later' });
      expect(res.headers['retry-after']).toBe('300');
    }
  });

  it('I19 a silent token endpoint → 504', async () => {
    zone.faults.token = { kind: 'hang' };
    expect((await callBackend()).status).toBe(504);
  });

  it('I22 a redirect → 502', async () => {
    zone.faults.token = { kind: 'redirect', location: 'http://127.0.0.1:9/token' };
    expect((await callBackend()).status).toBe(502);
  });
});
