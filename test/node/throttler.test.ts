/**
 * Per-agent rate limiting (nestjs-keycard/throttler). Runs on Node's test runner, not Jest:
 * @nestjs/throttler is CommonJS and require()s NestJS 12 (ESM), which Jest supports only on
 * Node ≥ 24.9 (see ../shared/TOOLCHAIN.md). Compiled by `npm run test:node`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { TestZone } from '../../lib/testing/index.js';
import { KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { send } from '../support/http.js';
import { ADAPTERS, startApp, type RunningApp } from '../support/keycard-app.js';

const R = 'https://api.example.com';
const LIMIT = 3;

for (const adapter of ADAPTERS) {
  void describe(`throttler over ${adapter}`, () => {
    let zone: TestZone;
    let api: RunningApp;
    before(async () => {
      zone = await TestZone.start({ audience: R });
      api = await startApp(
        adapter,
        { zoneUrl: zone.issuer, resource: R, auditLog: true },
        {
          imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: LIMIT }])],
          // Registered in the app module, so Nest runs it before the Keycard guard: that must not matter.
          providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
        },
      );
    });
    after(async () => {
      await api?.close();
      await zone?.stop();
    });

    const token = (clientId: string, sub = 'alice') => zone.issueToken({ client_id: clientId, sub, scope: 'orders:read', sid: `sess-${clientId}` });
    const get = (t?: string, path = '/orders') => send(api.url, 'GET', path, t ? [['Authorization', `Bearer ${t}`]] : []);
    const audit = () =>
      api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

    void it('a noisy agent gets 429 + Retry-After; other agents and the same user through another agent are unaffected', async () => {
      const noisy = token('agent-b');
      const statuses: number[] = [];
      let retryAfter: unknown;
      for (let i = 0; i < LIMIT + 2; i++) {
        const res = await get(noisy);
        statuses.push(res.status);
        if (res.status === 429) retryAfter = res.headers['retry-after'];
      }
      assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
      assert.ok(Number(retryAfter) >= 1, `Retry-After ${String(retryAfter)}`);
      assert.equal((await get(token('agent-a'))).status, 200);
      assert.equal((await get(token('agent-c', 'alice'))).status, 200, 'the same user through another agent');
      assert.equal((await get(token('agent-b'))).status, 429, 'counted per agent, not per token');
    });

    void it('an invalid token is refused by the Keycard guard, with its challenge', async () => {
      const res = await get('not-a-token');
      assert.equal(res.status, 401);
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
    });

    void it('429 denials are audited with reason rate_limited, and the token never logged', async () => {
      const t = token('agent-burst');
      for (let i = 0; i < LIMIT + 1; i++) await get(t);
      await new Promise((r) => setTimeout(r, 50));
      const lines = audit().filter((l) => l.agent === 'agent-burst');
      assert.deepEqual(lines.map((l) => [l.status, l.reason]), [[200, undefined], [200, undefined], [200, undefined], [429, 'rate_limited']]);
      assert.equal(api.logger.lines.some((l) => l.includes(t)), false);
    });
  });
}
