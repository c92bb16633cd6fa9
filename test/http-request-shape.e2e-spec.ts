/**
 * Issue 24: over Express every request gets its `user` field as Node makes it (HttpRequestShape),
 * so the guard's `request.user = agent` writes a field the request has rather than giving each
 * request a new hidden class. What handlers and the app see must not change: the verified agent
 * on a protected route, nothing on a public one, and a `user` the app put there itself is never
 * taken for a verified agent. Over Express and Fastify, against the real local zone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Req } from '@nestjs/common';
import type { INestApplication } from '@nestjs/common';
import { Public, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { baseClaims, bearer, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { parseChallenge, send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

type Seen = { user?: unknown; ownUserBeforeApp?: boolean };

@Controller('shape')
class ShapeController {
  @Get('protected')
  @RequireScopes('read')
  guarded(@Req() request: Seen) {
    return { subject: (request.user as { subject?: string } | undefined)?.subject, ownUserBeforeApp: request.ownUserBeforeApp };
  }

  @Public()
  @Get('public')
  open(@Req() request: Seen) {
    return { user: request.user ?? null, ownUserBeforeApp: request.ownUserBeforeApp };
  }
}

/** An app middleware that runs before the guard: notes whether `user` is already an own field, and may set one itself (as passport does). */
function notingMiddleware(app: INestApplication): void {
  app.use((request: Seen & { headers: Record<string, string | undefined> }, _response: unknown, next: () => void) => {
    request.ownUserBeforeApp = Object.prototype.hasOwnProperty.call(request, 'user');
    if (request.headers['x-app-user'] !== undefined) request.user = { subject: 'set-by-the-app' };
    next();
  });
}

describe.each(ADAPTERS)('the request shape over %s (issue 24)', (adapter) => {
  let zone: TestZone;
  let running: RunningApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    running = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { controllers: [ShapeController], configure: notingMiddleware });
  });

  afterAll(async () => {
    await running?.close();
    await zone?.stop();
  });

  const token = () => zoneSigned(zone, T0_HEADER, baseClaims(zone, { scope: 'read', sub: 'user-1' }));

  it(adapter === 'express' ? 'an Express request has its user field before any app code runs' : 'a Fastify request is left as Fastify makes it', async () => {
    const answer = await send(running.url, 'GET', '/shape/public');
    expect(answer.status).toBe(200);
    // Over Fastify the middleware notes on the Node request, which the handler's Fastify request does not show.
    expect(answer.json).toEqual(adapter === 'express' ? { user: null, ownUserBeforeApp: true } : { user: null });
  });

  it('a protected route gets the verified agent on request.user', async () => {
    const answer = await send(running.url, 'GET', '/shape/protected', bearer(token()));
    expect(answer.status).toBe(200);
    expect((answer.json as { subject: string }).subject).toBe('user-1');
    expect(answer.text).not.toContain(token());
  });

  it('a user the app set itself is no verified agent: refused without a token (401, challenge), replaced with one', async () => {
    const refused = await send(running.url, 'GET', '/shape/protected', [['X-App-User', '1']]);
    expect(refused.status).toBe(401);
    expect(parseChallenge(refused.headers['www-authenticate'])?.scheme).toBe('Bearer');
    const admitted = await send(running.url, 'GET', '/shape/protected', [['X-App-User', '1'], ...bearer(token())]);
    expect(admitted.status).toBe(200);
    expect((admitted.json as { subject: string }).subject).toBe('user-1');
    expect(running.logger.lines.join('\n')).not.toContain(token());
  });
});
