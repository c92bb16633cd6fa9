/**
 * Delegated access over HTTP (catalogue §V): an API whose handlers declare the upstream resources
 * they need with `@Grant()`, get an access context with `@Access()`, and call a second local API
 * on the user's behalf; impersonation where the zone's policy allows it. Everything runs against
 * the real TestZone over loopback.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Module, Query, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import {
  Access, AccessContext, Agent, Grant, ImpersonationService, KeycardModule, Public, ResourceAccessError, type AgentContext,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { parseChallenge, send, type HttpAnswer } from './support/http.js';
import { ADAPTERS, CapturingLogger, startApp, type RunningApp } from './support/keycard-app.js';

const SERVICE = 'https://agent.example.com';
const SERVICE_PRM = `${SERVICE}/.well-known/oauth-protected-resource`;
/** The upstream the zone grants (a second local API verifies its tokens). */
const X = 'https://repos.example.com';
/** The upstream the zone may refuse. */
const Y = 'https://crm.example.com';
const SECRET = 'service-secret-0123456789';

let upstreamUrl = '';
let handlerRuns = 0;

/** What a handler saw, without any token. */
function describeAccess(access: AccessContext) {
  const errors = Object.fromEntries(
    Object.entries(access.errors).map(([resource, e]) => [resource, { name: e.name, reason: e.reason, kind: e.cause?.kind, code: e.cause?.code }]),
  );
  return { status: access.status, resources: access.resources, errors, has: { x: access.has(X), y: access.has(Y) } };
}

async function callUpstream(token: string) {
  const res = await fetch(`${upstreamUrl}/me`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { agent?: AgentContext };
  return { status: res.status, agent: body.agent?.clientId, user: body.agent?.subject, scopes: body.agent?.scopes, actor: body.agent?.actor };
}

@Controller('grant')
class GrantController {
  @Get('both')
  @Grant({ [X]: 'orders:read', [Y]: ['contacts:read'] })
  async both(@Access() access: AccessContext) {
    handlerRuns += 1;
    const upstream = access.has(X) ? await callUpstream(access.access(X).accessToken) : undefined;
    let thrown: unknown;
    try {
      access.access(Y);
    } catch (error) {
      thrown = error instanceof ResourceAccessError ? { name: error.name, resource: error.resource, message: error.message } : String(error);
    }
    return { ...describeAccess(access), upstream, thrown, json: JSON.parse(JSON.stringify(access)) as unknown };
  }

  @Get('stacked')
  @Grant(X, 'orders:read')
  @Grant(X, ['orders:write'])
  @Grant([Y])
  stacked(@Access() access: AccessContext) {
    return { ...describeAccess(access), xScope: access.has(X) ? access.access(X).scope : undefined };
  }

  @Get('rethrow')
  @Grant(Y, 'contacts:read')
  rethrow(@Access() access: AccessContext) {
    // The handler decides: here it lets the failure answer for itself.
    return { scope: access.access(Y).scope };
  }

  @Get('undeclared')
  @Grant(X)
  undeclared(@Access() access: AccessContext) {
    try {
      access.access(Y);
      return { thrown: false };
    } catch (error) {
      return { thrown: (error as ResourceAccessError).reason };
    }
  }

  @Public()
  @Get('public')
  @Grant(X, 'orders:read')
  open(@Access() access: AccessContext) {
    return describeAccess(access);
  }
}

@Grant(Y, 'contacts:read')
@Controller('class-grant')
class ClassGrantController {
  @Get()
  @Grant(X, 'orders:read')
  both(@Access() access: AccessContext) {
    handlerRuns += 1;
    return describeAccess(access);
  }
}

/** One handler shared by two controllers through their base class, each with its own class grant. */
class InheritedGrantBase {
  @Get()
  list(@Access() access: AccessContext) {
    return describeAccess(access);
  }
}

@Grant(X, 'orders:read')
@Controller('inherit-x')
class InheritsGrantX extends InheritedGrantBase {}

@Grant(Y, 'contacts:read')
@Controller('inherit-y')
class InheritsGrantY extends InheritedGrantBase {}

@Controller('impersonate')
class ImpersonationController {
  constructor(private readonly impersonation: ImpersonationService) {}

  /** The user comes from the verified token only; the `user` query is ignored on purpose. */
  @Get()
  async act(@Agent('subject') user: string, @Query('user') _requested?: string) {
    const token = await this.impersonation.impersonate({ user, resource: X, scope: 'orders:read' });
    return callUpstream(token.accessToken);
  }
}

describe.each(ADAPTERS)('delegated access over HTTP (%s)', (adapter) => {
  let zone: TestZone;
  let upstream: RunningApp;
  let service: { app: INestApplication; url: string; logger: CapturingLogger };

  beforeAll(async () => {
    zone = await TestZone.start({
      audience: SERVICE,
      resources: { [X]: ['orders:read', 'orders:write'], [Y]: ['contacts:read'] },
      clients: [{ clientId: 'agent-a', clientSecret: SECRET }],
    });
    upstream = await startApp('express', { zoneUrl: zone.issuer, resource: X });
    upstreamUrl = upstream.url;
    const logger = new CapturingLogger();
    @Module({
      imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: SERVICE, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET }, logger })],
      controllers: [GrantController, ClassGrantController, InheritsGrantX, InheritsGrantY, ImpersonationController],
    })
    class ServiceModule {}
    const app = await NestFactory.create(ServiceModule, adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    service = { app, url: `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`, logger };
  });
  afterEach(() => {
    zone.reset();
    handlerRuns = 0;
  });
  afterAll(async () => {
    await service?.app.close();
    await upstream?.close();
    await zone?.stop();
  });

  const userToken = () => zone.issueToken({ sub: 'alice', client_id: 'user-app', scope: 'agent:use' });
  const call = (path: string, token: string | null = userToken()) =>
    send(service.url, 'GET', path, token ? [['Authorization', `Bearer ${token}`]] : []);
  /** INV7 / I30: no inbound token, exchanged token or secret in the answer or the logs. */
  const expectNoLeak = (res: HttpAnswer, ...secrets: string[]) => {
    for (const secret of [SECRET, ...secrets]) {
      expect(res.text.includes(secret)).toBe(false);
      expect(JSON.stringify(res.headers).includes(secret)).toBe(false);
      expect(service.logger.lines.some((line) => line.includes(secret))).toBe(false);
    }
  };

  describe('V1 grant per handler', () => {
    it('V1 the zone grants X and refuses Y → handler runs once, X token works upstream, Y is a typed error, partial_error, AS#1 per resource', async () => {
      zone.refuseResource(Y, 'invalid_target');
      const token = userToken();
      const res = await call('/grant/both', token);
      expect(res.status).toBe(200);
      expect(handlerRuns).toBe(1);
      expect(res.json).toMatchObject({
        status: 'partial_error',
        resources: [X, Y],
        has: { x: true, y: false },
        errors: { [Y]: { name: 'ResourceAccessError', reason: 'exchange_failed', kind: 'oauth', code: 'invalid_target' } },
        upstream: { status: 200, agent: 'agent-a', user: 'alice', scopes: ['orders:read'] },
        thrown: { name: 'ResourceAccessError', resource: Y },
        json: { status: 'partial_error', resources: { [X]: 'granted', [Y]: 'invalid_target' } },
      });
      expect(Object.keys((res.json as { errors: object }).errors)).toEqual([Y]);
      // One exchange per resource, each with the inbound token as subject and its own scopes.
      expect(zone.counts.token).toBe(2);
      const forms = Object.fromEntries(zone.tokenRequests.map(({ form }) => [form.resource, [form.scope, form.subject_token === token]]));
      expect(forms).toEqual({ [X]: ['orders:read', true], [Y]: ['contacts:read', true] });
      expect(service.logger.lines.some((l) => l.includes(`Grant: no token for ${Y}`))).toBe(true);
      expectNoLeak(res, token);
    });

    it('V1 the exchange cache is honoured: the same caller again → AS#0 for X, Y (refused, never cached) asked again', async () => {
      zone.refuseResource(Y);
      const token = userToken();
      await call('/grant/both', token);
      expect(zone.counts.token).toBe(2);
      const again = await call('/grant/both', token);
      expect(again.json).toMatchObject({ status: 'partial_error', upstream: { status: 200, user: 'alice' } });
      expect(zone.counts.token).toBe(3);
      expect(zone.tokenRequests[2].form.resource).toBe(Y);
      expect(handlerRuns).toBe(2);
    });

    it('V1 both granted → success, no errors; a second request is served from the cache (AS#0)', async () => {
      const token = userToken();
      const first = await call('/grant/both', token);
      expect(first.json).toMatchObject({ status: 'success', errors: {}, has: { x: true, y: true } });
      expect(first.json).not.toHaveProperty('thrown');
      expect(zone.counts.token).toBe(2);
      await call('/grant/both', token);
      expect(zone.counts.token).toBe(2);
      expectNoLeak(first, token);
    });

    it('V1 the exchanges run in parallel: both reach the zone before either is answered', async () => {
      zone.faults.token = { kind: 'slow', delayMs: 1_000 };
      const pending = call('/grant/both');
      const started = Date.now();
      while (zone.tokenRequests.length < 2 && Date.now() - started < 800) await new Promise((r) => setTimeout(r, 10));
      expect(zone.tokenRequests.length).toBe(2);
      expect((await pending).json).toMatchObject({ status: 'success' });
    });

    it('V1 the zone fails every exchange (500 twice each) → status error, the handler still answers 200 (never a 500 from the grant)', async () => {
      zone.faults.token = { kind: 'status', status: 500 };
      const token = userToken();
      const res = await call('/grant/both', token);
      expect(res.status).toBe(200);
      expect(handlerRuns).toBe(1);
      expect(res.json).toMatchObject({
        status: 'error',
        has: { x: false, y: false },
        errors: {
          [X]: { reason: 'exchange_failed', kind: 'oauth', code: 'server_error' },
          [Y]: { reason: 'exchange_failed', kind: 'oauth', code: 'server_error' },
        },
      });
      expect(zone.counts.token).toBe(4); // one attempt and one retry per resource (I17)
      expectNoLeak(res, token);
    });

    it('V1 stacked grants merge: the scopes of a resource named twice are joined, a list names resources', async () => {
      const res = await call('/grant/stacked');
      expect(res.json).toMatchObject({ status: 'success', resources: [X, Y], xScope: 'orders:read orders:write' });
      const forms = Object.fromEntries(zone.tokenRequests.map((r) => [r.form.resource, r.form.scope]));
      expect(forms).toEqual({ [X]: 'orders:read orders:write', [Y]: undefined });
      expect(zone.counts.token).toBe(2);
    });

    it('V1 a controller grant and a method grant merge; the grant runs once (AS#1 per resource)', async () => {
      const res = await call('/class-grant');
      expect(res.json).toMatchObject({ status: 'success', resources: [X, Y] });
      expect(handlerRuns).toBe(1);
      expect(zone.counts.token).toBe(2);
    });

    it('V1 one inherited handler under two controllers: each request gets its own controller\'s grant, never the other\'s', async () => {
      const x = await call('/inherit-x');
      expect(x.json).toMatchObject({ status: 'success', resources: [X] });
      const y = await call('/inherit-y');
      expect(y.json).toMatchObject({ status: 'success', resources: [Y] });
      expect(zone.tokenRequests.map((r) => r.form.resource)).toEqual([X, Y]);
    });

    it('V1 asking for a resource the grant does not name → ResourceAccessError not_granted, AS#1', async () => {
      const res = await call('/grant/undeclared');
      expect(res.json).toEqual({ thrown: 'not_granted' });
      expect(zone.counts.token).toBe(1);
    });

    it('V1 a handler that rethrows the typed error gets the exchange answer (I13 invalid_grant → 401 IT with its own metadata)', async () => {
      zone.refuseResource(Y, 'invalid_grant');
      const token = userToken();
      const res = await call('/grant/rethrow', token);
      expectOutcome(res, '401 IT', SERVICE_PRM, [token, SECRET], service.logger.lines);
    });

    it('V1 a handler that rethrows a configuration refusal (invalid_target) → 500 server_error, logged without secrets', async () => {
      zone.refuseResource(Y, 'invalid_target');
      const token = userToken();
      const res = await call('/grant/rethrow', token);
      expect(res.status).toBe(500);
      expect(res.json).toEqual({ error: 'server_error', error_description: 'The service is misconfigured' });
      expectNoLeak(res, token);
    });

    it('V1 a grant on a @Public() route without a token → status error (no_inbound_token), AS#0', async () => {
      const res = await call('/grant/public', null);
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ status: 'error', errors: { [X]: { reason: 'no_inbound_token' } } });
      expect(zone.counts.token).toBe(0);
    });

    it('V1 the guard still judges a grant route first: no token → 401 and no exchange', async () => {
      const res = await call('/grant/both', null);
      expectOutcome(res, '401∅', SERVICE_PRM);
      expect(zone.counts.token).toBe(0);
      expect(handlerRuns).toBe(0);
    });
  });

  describe('V3 impersonation', () => {
    it('V3 zone policy refuses → ImpersonationRefusedError, answered 403 with a challenge without error code; not cached', async () => {
      const token = userToken();
      const res = await call('/impersonate', token);
      expect(res.status).toBe(403);
      expect(parseChallenge(res.headers['www-authenticate'])?.params).toEqual({ resource_metadata: SERVICE_PRM });
      expect(res.json).toEqual({ error: 'forbidden', error_description: 'The authorization server refused this operation' });
      expect(zone.counts.token).toBe(1);
      await call('/impersonate', token);
      expect(zone.counts.token).toBe(2);
      expectNoLeak(res, token);
    });

    it('V3 zone policy allows → a token with the user as sub and the service as actor; the user comes from the verified token, never from request data', async () => {
      zone.impersonation = 'allowed';
      const token = userToken();
      const res = await call('/impersonate?user=mallory', token);
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ status: 200, agent: 'agent-a', user: 'alice', scopes: ['orders:read'], actor: { subject: 'agent-a' } });
      expect(zone.tokenRequests[0].form).toMatchObject({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: 'alice',
        subject_token_type: 'urn:keycard:params:oauth:token-type:substitute-user',
        resource: X,
        scope: 'orders:read',
      });
      expect(zone.tokenRequests[0].form.actor_token_type).toBeUndefined();
      // Cached like every grant: the same user again → AS#0.
      await call('/impersonate', token);
      expect(zone.counts.token).toBe(1);
      expectNoLeak(res, token);
    });
  });
});
