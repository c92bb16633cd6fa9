/**
 * DecisionEvents and TokenValidators as the README ("How a call is decided") tells a user to use
 * them, and what a subscriber must not be able to do (change a decision, read a token).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { inspect } from 'node:util';
import {
  Agent, CarrierLifecycle, DecisionEvents, InvalidTokenException, KEYCARD_TOKEN_VALIDATORS, RequireScopes,
  type AgentContext, type Call, type DecisionEvent, type TokenValidator,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R, bearer } from './support/forge.js';
import { send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

/** A deny list of jtis, as the README suggests ("a deny list, a tenant claim"). */
class DenyList implements TokenValidator {
  readonly denied = new Set<string>();
  calls = 0;
  throwPlain = false;
  validate(agent: AgentContext, _call: Call): void {
    this.calls++;
    if (this.throwPlain && agent.subject === 'plain') throw new Error('boom with secret detail');
    if (agent.tokenId !== undefined && this.denied.has(agent.tokenId)) throw new InvalidTokenException('claim_invalid');
  }
}
const denyList = new DenyList();

/** The README's subscriber, plus a record of every event. */
@Injectable()
class Recorder implements OnModuleInit {
  readonly events: DecisionEvent[] = [];
  mode: 'record' | 'throw' | 'mutate' | 'swap-user' = 'record';
  constructor(private readonly decisions: DecisionEvents) {}
  onModuleInit(): void {
    this.decisions.subscribe((event) => {
      this.events.push(event);
      if (this.mode === 'throw') throw new Error('subscriber bug');
      if (this.mode === 'mutate') {
        // An accidental in-place change an observer might make (normalising, emptying after use).
        (event.requiredScopes as string[] | undefined)?.splice(0);
      }
      if (this.mode === 'swap-user' && event.type === 'admitted') {
        const req = event.context!.switchToHttp().getRequest<{ user?: unknown }>();
        req.user = { clientId: 'forged-by-subscriber', subject: 'root', scopes: ['admin'] };
      }
    });
  }
}

@Controller()
class Orders {
  @Get('orders')
  @RequireScopes('orders:read')
  list(@Agent() agent: AgentContext) {
    return { clientId: agent.clientId, subject: agent.subject };
  }

  @Get('admin')
  @RequireScopes('admin')
  admin(@Agent() agent: AgentContext) {
    return { clientId: agent.clientId };
  }
}

@Module({ providers: [{ provide: KEYCARD_TOKEN_VALIDATORS, useValue: [denyList] }], exports: [KEYCARD_TOKEN_VALIDATORS] })
class ValidatorsModule {}


function challenge(header: unknown): Record<string, string> {
  const text = String(header ?? '');
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/([a-z_]+)="([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

describe('decision events and token validators (README "How a call is decided")', () => {
  let zone: TestZone;
  let api: RunningApp;
  let recorder: Recorder;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    // Exactly as the README says: "provide an array under KEYCARD_TOKEN_VALIDATORS" — in the app module.
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R, clockToleranceSeconds: 0 }, {
      controllers: [Orders],
      providers: [Recorder, { provide: KEYCARD_TOKEN_VALIDATORS, useValue: [denyList] }],
    });
    recorder = api.app.get(Recorder);
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const get = (path: string, token?: string) => send(api.url, 'GET', path, token ? bearer(token) : []);

  it('README: a validator provided in the app module runs (KEYCARD_TOKEN_VALIDATORS)', async () => {
    const before = denyList.calls;
    const token = zone.issueToken({ client_id: 'agent-v', sub: 'alice', scope: 'orders:read' });
    expect((await get('/orders', token)).status).toBe(200);
    expect(denyList.calls).toBeGreaterThan(before); // FINDING if 0: the app module's provider is not seen by the global module
  });

  it('README: event fields of an admission, refusals with reasons, final=true without a throttler', async () => {
    recorder.events.length = 0;
    const token = zone.issueToken({ client_id: 'agent-e', sub: 'bob', sid: 's-1', scope: 'orders:read' });
    await get('/orders', token);
    await get('/orders');
    await get('/orders', `${token.slice(0, -4)}AAAA`);
    await get('/admin', token);
    const expired = zone.issueToken({ client_id: 'agent-e', sub: 'bob', exp: Math.floor(Date.now() / 1000) - 10, iat: Math.floor(Date.now() / 1000) - 100 });
    await get('/orders', expired);
    const [ok, none, forged, scope, exp] = recorder.events;
    expect(ok).toMatchObject({ type: 'admitted', status: 200, final: true, call: { kind: 'http', name: 'GET /orders' }, onBehalfOf: 'bob', sessionId: 's-1', requiredScopes: ['orders:read'], performedBy: { issuer: zone.issuer, clientId: 'agent-e', agentId: 'agent-e' } });
    expect(none).toMatchObject({ type: 'refused', reason: 'no_credentials', status: 401 });
    expect(none.performedBy).toBeUndefined();
    expect(forged).toMatchObject({ type: 'refused', reason: 'invalid_token', status: 401 });
    expect(forged.performedBy).toBeUndefined();
    expect(scope).toMatchObject({ type: 'refused', reason: 'insufficient_scope', status: 403, missingScopes: ['admin'] });
    expect(exp).toMatchObject({ type: 'refused', reason: 'token_expired', detail: 'expired' });
    expect(recorder.events).toHaveLength(5);
  });

  it('INV7: an event never holds the token; printing or serialising it shows none', async () => {
    recorder.events.length = 0;
    const forged = `${zone.issueToken({ client_id: 'agent-leak' }).slice(0, -4)}AAAA`;
    await get('/orders', forged);
    const event = recorder.events[0]!;
    const printed = inspect(event); // what `console.log(event)` or a logger's `%o` writes
    expect((event as unknown as { source: { token?: string } }).source.token).toBeUndefined();
    expect(printed).not.toContain(forged.split('.')[2]!);
    const serialised = JSON.stringify(event);
    expect(serialised).toContain('"reason":"invalid_token"');
    expect(serialised).not.toContain(forged.split('.')[2]!);
  });

  it('README: a subscriber that throws does not change the answer; logged by error name only', async () => {
    recorder.mode = 'throw';
    try {
      const token = zone.issueToken({ client_id: 'agent-t', sub: 'carol', scope: 'orders:read' });
      api.logger.lines.length = 0;
      expect((await get('/orders', token)).status).toBe(200);
      const refused = await get('/admin', token);
      expect(refused.status).toBe(403);
      expect(api.logger.lines.filter((l) => l.includes('subscriber failed'))).toHaveLength(2);
      expect(api.logger.lines.join('\n')).not.toContain('subscriber bug');
    } finally {
      recorder.mode = 'record';
    }
  });

  it('README: a validator runs on cache hits too, and its refusal is 401 invalid_token with a proper challenge', async () => {
    const token = zone.issueToken({ client_id: 'agent-c', sub: 'dave', scope: 'orders:read' });
    expect((await get('/orders', token)).status).toBe(200);
    expect((await get('/orders', token)).status).toBe(200); // now in the verified-token cache (its second verification)
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    denyList.denied.add(jti);
    recorder.events.length = 0;
    const answer = await get('/orders', token);
    expect(answer.status).toBe(401);
    const params = challenge(answer.headers['www-authenticate']);
    expect(String(answer.headers['www-authenticate'])).toMatch(/^Bearer /);
    expect(params).toMatchObject({ error: 'invalid_token', resource_metadata: `${R}/.well-known/oauth-protected-resource`, scope: 'orders:read' });
    expect(params.error_description).toMatch(/^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/);
    expect(recorder.events[0]).toMatchObject({ type: 'refused', reason: 'invalid_token', detail: 'claim_invalid' });
  });

  it('a validator that throws a plain Error: 401 invalid_token, no 500, no detail leaked', async () => {
    denyList.throwPlain = true;
    try {
      const token = zone.issueToken({ client_id: 'agent-p', sub: 'plain', scope: 'orders:read' });
      api.logger.lines.length = 0;
      const answer = await get('/orders', token);
      expect(answer.status).toBe(401);
      expect(challenge(answer.headers['www-authenticate']).error).toBe('invalid_token');
      expect(api.logger.lines.join('\n')).not.toContain('secret detail');
    } finally {
      denyList.throwPlain = false;
    }
  });

  it('README: a subscriber "cannot change" a decision — one that empties event.requiredScopes in place', async () => {
    const readOnly = zone.issueToken({ client_id: 'agent-m', sub: 'erin', scope: 'orders:read' });
    expect((await get('/admin', readOnly)).status).toBe(403);
    recorder.mode = 'mutate';
    let after: number;
    try {
      await get('/admin', readOnly); // the subscriber sees this event and empties its requiredScopes
      after = (await get('/admin', readOnly)).status;
    } finally {
      recorder.mode = 'record';
    }
    expect(after).toBe(403);
  });

  it('README: a subscriber "cannot change" what the handler sees — one that replaces request.user on admission', async () => {
    const token = zone.issueToken({ client_id: 'agent-s', sub: 'frank', scope: 'orders:read' });
    recorder.mode = 'swap-user';
    let body: unknown;
    try {
      body = (await get('/orders', token)).json;
    } finally {
      recorder.mode = 'record';
    }
    expect(body).toEqual({ clientId: 'agent-s', subject: 'frank' });
  });

  it("changing event.agent.expiresAt (a Date) does not move the token's expiry for carriers", async () => {
    const token = zone.issueToken({ client_id: 'agent-d', sub: 'gina', scope: 'orders:read' });
    recorder.events.length = 0;
    await get('/orders', token);
    const agent = recorder.events[0]!.agent!;
    expect(Object.isFrozen(agent)).toBe(true);
    const original = agent.expiresAt.getTime();
    let mutable = false;
    try {
      agent.expiresAt.setTime(original + 3_600_000);
      mutable = agent.expiresAt.getTime() !== original;
    } catch {
      mutable = false;
    } finally {
      agent.expiresAt.setTime(original);
    }
    // A Date cannot be frozen; what the module reads is the expiry kept when the token was verified.
    const lifecycle = api.app.get(CarrierLifecycle);
    const before = lifecycle.msUntilExpiry(agent);
    agent.expiresAt.setTime(original + 3_600_000);
    try {
      expect(lifecycle.msUntilExpiry(agent)).toBeLessThanOrEqual(before);
    } finally {
      agent.expiresAt.setTime(original);
    }
    expect(typeof mutable).toBe('boolean');
  });
});

describe('KEYCARD_TOKEN_VALIDATORS exported from an imported module', () => {
  it('the validator runs when provided by a module the app imports', async () => {
    const zone = await TestZone.start({ audience: R });
    const before = denyList.calls;
    const api = await startApp('express', { zoneUrl: zone.issuer, resource: R }, { controllers: [Orders], imports: [ValidatorsModule] });
    try {
      const token = zone.issueToken({ client_id: 'agent-w', sub: 'h', scope: 'orders:read' });
      expect((await send(api.url, 'GET', '/orders', bearer(token))).status).toBe(200);
      expect(denyList.calls).toBeGreaterThan(before);
    } finally {
      await api.close();
      await zone.stop();
    }
  });
});
