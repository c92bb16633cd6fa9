/**
 * Per-agent rate limiting (nestjs-keycard/throttler). Runs on Node's test runner, not Jest:
 * @nestjs/throttler is CommonJS and require()s NestJS 12 (ESM), which Jest supports only on
 * Node ≥ 24.9 (see ../shared/TOOLCHAIN.md). Compiled by `npm run test:node`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { TestZone } from '../../lib/testing/index.js';
import { KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { parseChallenge, send, type HttpAnswer } from '../support/http.js';
import { ADAPTERS, startApp, type AdapterName, type RunningApp } from '../support/keycard-app.js';

const R = 'https://api.example.com';
const PRM = `${R}/.well-known/oauth-protected-resource`;
const LIMIT = 3;

/** Provides the throttler guard from a module imported after KeycardModule: Nest then runs the Keycard guard first. */
@Module({ providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }] })
class ThrottlerAfterKeycardModule {}

/** The two global guard orders an app can end up with; refusals must be counted in both. */
const GUARD_ORDERS = {
  'throttler first': { imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: LIMIT }])], providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }] },
  'Keycard guard first': { imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: LIMIT }]), ThrottlerAfterKeycardModule] },
};

async function withApp(
  adapter: AdapterName,
  order: keyof typeof GUARD_ORDERS,
  run: (api: RunningApp, zone: TestZone) => Promise<void>,
  prepare?: (zone: TestZone) => void,
): Promise<void> {
  const zone = await TestZone.start({ audience: R });
  prepare?.(zone);
  const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, GUARD_ORDERS[order]);
  try {
    await run(api, zone);
  } finally {
    await api.close();
    await zone.stop();
  }
}

const auditLines = (api: RunningApp) =>
  api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);

/** 429 of the rate limiter: Retry-After ≥ 1 s, no challenge, the body of every refusal (issue 25), nothing of `secrets`. */
function assertRateLimited(res: HttpAnswer, secrets: readonly string[]): void {
  assert.equal(res.status, 429, res.text);
  assert.ok(Number(res.headers['retry-after']) >= 1, `Retry-After ${String(res.headers['retry-after'])}`);
  assert.equal(res.headers['www-authenticate'], undefined);
  assert.deepEqual(res.json, { error: 'rate_limited', error_description: 'Too many requests, retry later' });
  for (const secret of secrets) assert.equal(res.text.includes(secret) || JSON.stringify(res.headers).includes(secret), false);
}

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

for (const adapter of ADAPTERS) {
  for (const order of Object.keys(GUARD_ORDERS) as (keyof typeof GUARD_ORDERS)[]) {
    void describe(`refusals under the throttler over ${adapter}, ${order}`, () => {
      void it(`M19 limit 3: 10 forged / absent tokens from one address → 401 ×3 then 429 + Retry-After; a valid agent from that address → 200`, async () => {
        await withApp(adapter, order, async (api, zone) => {
          const valid = zone.issueToken({ client_id: 'agent-ok', scope: 'orders:read' });
          const forged = `${valid.slice(0, -6)}AAAAAA`;
          const answers: HttpAnswer[] = [];
          for (let i = 0; i < 10; i++) {
            const headers: [string, string][] = i % 2 === 0 ? [['Authorization', `Bearer ${forged}`]] : [];
            answers.push(await send(api.url, 'GET', '/orders', headers));
          }
          assert.deepEqual(answers.map((a) => a.status), [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
          for (const [i, res] of answers.slice(0, 3).entries()) {
            const challenge = parseChallenge(res.headers['www-authenticate']);
            assert.equal(challenge?.scheme, 'Bearer');
            assert.equal(challenge.params.resource_metadata, PRM);
            assert.equal(challenge.params.scope, 'orders:read', 'a 401 of a scoped route names its scope (Q12)');
            assert.equal(challenge.params.error, i % 2 === 0 ? 'invalid_token' : undefined);
            if (i % 2 === 0) assert.equal((res.json as { error?: string }).error, 'invalid_token');
          }
          for (const res of answers.slice(3)) assertRateLimited(res, [forged, valid]);

          const ok = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${valid}`]]);
          assert.equal(ok.status, 200, 'a valid agent from the same address is counted on its own');
          assert.equal((ok.json as { agent: { clientId: string } }).agent.clientId, 'agent-ok');

          await new Promise((r) => setTimeout(r, 50));
          const audit = auditLines(api);
          assert.deepEqual(
            audit.map((l) => [l.status, l.reason]),
            [
              [401, 'signature_invalid'], [401, 'no_credentials'], [401, 'signature_invalid'],
              ...Array.from({ length: 7 }, () => [429, 'rate_limited']),
              [200, undefined],
            ],
          );
          assert.equal(api.logger.lines.some((l) => l.includes(forged) || l.includes(valid) || l.includes(valid.split('.')[2])), false);
        });
      });

      void it('M19 a missing scope (403) counts against the address too; a zone outage (503) never does', async () => {
        await withApp(adapter, order, async (api, zone) => {
          const noScope = zone.issueToken({ client_id: 'agent-scope', scope: 'profile' });
          const statuses: number[] = [];
          for (let i = 0; i < 4; i++) statuses.push((await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${noScope}`]])).status);
          assert.deepEqual(statuses, [403, 403, 403, 429]);
        });
        await withApp(
          adapter,
          order,
          async (api, zone) => {
            const token = zone.issueToken({ client_id: 'agent-outage', scope: 'orders:read' });
            for (let i = 0; i < LIMIT + 2; i++) {
              const res = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
              assert.equal(res.status, 503, `#${i + 1}: ${res.text}`);
              assert.equal(res.headers['www-authenticate'], undefined);
            }
          },
          (zone) => (zone.faults.jwks = { kind: 'status', status: 500 }),
        );
      });
    });
  }

  void it(`M19 over ${adapter}: a failing throttler storage leaves refusals as they were (401 + challenge, never 500)`, async () => {
    const zone = await TestZone.start({ audience: R });
    const failing = { increment: () => Promise.reject(new Error('storage down')) };
    const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, {
      imports: [ThrottlerModule.forRoot({ throttlers: [{ ttl: 60_000, limit: LIMIT }], storage: failing })],
      providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
    });
    try {
      for (let i = 0; i < LIMIT + 1; i++) {
        const res = await send(api.url, 'GET', '/orders', [['Authorization', 'Bearer not-a-token']]);
        assert.equal(res.status, 401, res.text);
        assert.equal(parseChallenge(res.headers['www-authenticate'])?.params.error, 'invalid_token');
      }
      assert.ok(api.logger.lines.includes('Refusal limiter failed: Error'));
      assert.equal(api.logger.lines.some((l) => l.includes('not-a-token')), false);
    } finally {
      await api.close();
      await zone.stop();
    }
  });

  void describe(`discovery under the throttler over ${adapter}`, () => {
    void it('M20 discovery endpoints are never rate-limited (10 × each → 200, no X-RateLimit headers); a public route still is', async () => {
      await withApp(adapter, 'throttler first', async (api) => {
        for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-authorization-server']) {
          for (let i = 0; i < 10; i++) {
            const res = await send(api.url, 'GET', path);
            assert.equal(res.status, 200, `${path} #${i + 1}: ${res.text}`);
            assert.equal(res.headers['x-ratelimit-limit'], undefined);
            assert.equal(res.headers['retry-after'], undefined);
            assert.equal(res.headers['www-authenticate'], undefined);
          }
        }
        assert.equal(((await send(api.url, 'GET', '/.well-known/oauth-protected-resource')).json as { resource: string }).resource, R);
        const health: number[] = [];
        for (let i = 0; i < 4; i++) health.push((await send(api.url, 'GET', '/health')).status);
        assert.deepEqual(health, [200, 200, 200, 429], 'public routes are limited per address');
      });
    });
  });
}
