/**
 * Catalogue W6, the 429: the throttler integration's refusal on the server span and in the decision
 * metrics, with a real OpenTelemetry SDK. On Node's test runner because @nestjs/throttler is
 * CommonJS that require()s NestJS 12 (see throttler.test.ts). Compiled by `npm run test:node`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { SpanStatusCode } from '@opentelemetry/api';
import { TestZone } from '../../lib/testing/index.js';
import { KEYCARD_ATTRIBUTES as A, KeycardTelemetryModule } from '../../lib/telemetry/index.js';
import { KeycardThrottlerGuard } from '../../lib/throttler/index.js';
import { send } from '../support/http.js';
import { ADAPTERS, startApp } from '../support/keycard-app.js';
import { finished, points, serverSpans, startTestSdk } from '../support/telemetry.js';

const R = 'https://api.example.com';

void describe('telemetry with the throttler', () => {
  for (const adapter of ADAPTERS) {
    void it(`W6 ${adapter}: a 429 of the throttler is rate_limited on the server span, status unset, and counted once`, async () => {
      const sdk = startTestSdk();
      const zone = await TestZone.start({ audience: R });
      const api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, {
        imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: 1 }]), KeycardTelemetryModule.forRoot()],
        providers: [{ provide: APP_GUARD, useClass: KeycardThrottlerGuard }],
        configure: serverSpans,
      });
      try {
        const counted = async () => points(await sdk.collect(), 'keycard.decisions').filter((p) => p.attributes[A.DECISION] === 'rate_limited').reduce((n, p) => n + p.value, 0);
        const before = await counted();
        const token = zone.issueToken({ client_id: 'cli-1', keycard_app_id: 'app-7', scope: 'orders:read' });
        const headers: [string, string][] = [['Authorization', `Bearer ${token}`]];
        assert.equal((await send(api.url, 'GET', '/orders', headers)).status, 200);
        const res = await send(api.url, 'GET', '/orders', headers);
        assert.equal(res.status, 429);
        assert.ok(Number(res.headers['retry-after']) >= 1);
        const span = finished(sdk.spans).at(-1)!;
        assert.equal(span.attributes['http.response.status_code'], 429);
        assert.equal(span.attributes[A.DECISION], 'rate_limited');
        assert.equal(span.attributes[A.REASON], 'rate_limited');
        assert.equal(span.attributes[A.AGENT_ID], 'app-7');
        assert.equal(span.status.code, SpanStatusCode.UNSET);
        assert.equal((await counted()) - before, 1);
        const exported = await sdk.everything();
        assert.equal(exported.includes(token.split('.')[2]!), false);
        assert.equal(api.logger.lines.some((line) => line.includes(token.split('.')[2]!)), false);
      } finally {
        await api.close();
        await zone.stop();
      }
    });
  }
});
