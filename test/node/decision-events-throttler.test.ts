/**
 * Catalogue T30 and the rate-limited decision of W2, under `KeycardThrottlerGuard`: the stable agent
 * identity (`keycard_app_id`, else `client_id`, Q18) is the rate-limit bucket and is in the events
 * and audit records beside the `client_id`. Node's test runner, not Jest: @nestjs/throttler is
 * CommonJS (see throttler.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, Injectable, type OnModuleInit } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { Throttle, ThrottlerModule } from '@nestjs/throttler';
import { Agent, DecisionEvents, RequireScopes, type DecisionEvent } from '../../lib/index.js';
import { TestZone } from '../../lib/testing/index.js';
import { KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { send } from '../support/http.js';
import { startApp, type RunningApp } from '../support/keycard-app.js';

const R = 'https://api.example.com';

@Injectable()
class Recorder implements OnModuleInit {
  readonly events: DecisionEvent[] = [];
  constructor(private readonly source: DecisionEvents) {}
  onModuleInit(): void {
    this.source.subscribe((event) => this.events.push(event));
  }
}

@Controller('orders')
class Orders {
  @Get(':id')
  @RequireScopes('orders:read')
  one(@Agent('agentId') agentId: string) {
    return { agentId };
  }

  @Get(':id/limited')
  @Throttle({ default: { limit: 1, ttl: 60_000 } })
  @RequireScopes('orders:read')
  limited() {
    return { ok: true };
  }
}

const auditLines = (api: RunningApp) =>
  api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
const bearer = (token: string): [string, string] => ['Authorization', `Bearer ${token}`];

void describe('stable agent identity and rate-limited decisions', () => {
  let zone: TestZone;
  let api: RunningApp;
  before(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R, auditLog: true }, {
      controllers: [Orders],
      imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: 3 }])],
      providers: [Recorder, { provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
    });
  });
  after(async () => {
    await api?.close();
    await zone?.stop();
  });

  void it('T30 cred-1 then cred-2 of one keycard_app_id app-7 (limit 3), 2 + 2 requests: agentId app-7 for both, the 4th → 429 (one bucket per (iss, app-7)); audit records carry agentId and clientId', async () => {
    const token = (clientId: string, app: string) => zone.issueToken({ sub: 'user-1', client_id: clientId, keycard_app_id: app, scope: 'orders:read' });
    const [cred1, cred2] = [token('cred-1', 'app-7'), token('cred-2', 'app-7')];
    const recorder = api.app.get(Recorder);
    recorder.events.length = 0;
    api.logger.lines.length = 0;
    const statuses: number[] = [];
    const agents: unknown[] = [];
    for (const t of [cred1, cred1, cred2, cred2]) {
      const res = await send(api.url, 'GET', '/orders/1', [bearer(t)]);
      statuses.push(res.status);
      if (res.status === 200) agents.push((res.json as { agentId: string }).agentId);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    assert.deepEqual(agents, ['app-7', 'app-7', 'app-7']);
    // Another Keycard app of the same user, with a credential of the same name pattern: its own bucket.
    assert.equal((await send(api.url, 'GET', '/orders/1', [bearer(token('cred-9', 'app-8'))])).status, 200);
    const who = (p: unknown) => [(p as { agentId?: string } | undefined)?.agentId, (p as { clientId?: string } | undefined)?.clientId];
    assert.deepEqual(auditLines(api).map((l) => [l.status, l.agentId, l.agent]), [
      [200, 'app-7', 'cred-1'], [200, 'app-7', 'cred-1'], [200, 'app-7', 'cred-2'], [429, 'app-7', 'cred-2'], [200, 'app-8', 'cred-9'],
    ]);
    assert.deepEqual(recorder.events.filter((e) => e.final).map((e) => [e.type, ...who(e.performedBy)]), [
      ['admitted', 'app-7', 'cred-1'], ['admitted', 'app-7', 'cred-1'], ['admitted', 'app-7', 'cred-2'], ['rate_limited', 'app-7', 'cred-2'], ['admitted', 'app-8', 'cred-9'],
    ]);
    for (const text of [...api.logger.lines, JSON.stringify(recorder.events)]) {
      for (const t of [cred1, cred2]) assert.equal(text.includes(t.split('.')[2]!), false, 'a token reached a log line or an event');
    }
  });

  void it('W2 rate-limited: one rate_limited event, reason rate_limited, with the verified agent and user', async () => {
    const recorder = api.app.get(Recorder);
    const t = zone.issueToken({ sub: 'user-2', client_id: 'cli-l', keycard_app_id: 'app-limited', scope: 'orders:read' });
    assert.equal((await send(api.url, 'GET', '/orders/1/limited', [bearer(t)])).status, 200);
    recorder.events.length = 0;
    const res = await send(api.url, 'GET', '/orders/1/limited', [bearer(t)]);
    assert.equal(res.status, 429);
    assert.equal(res.headers['www-authenticate'], undefined);
    const final = recorder.events.filter((e) => e.final);
    assert.deepEqual(final.map((e) => [e.type, e.reason, e.status, e.performedBy?.agentId, e.onBehalfOf]), [['rate_limited', 'rate_limited', 429, 'app-limited', 'user-2']]);
  });
});
