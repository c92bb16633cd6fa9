/**
 * The health indicator's view of freshness (decision Q35: "health shows degraded"): while the
 * zone's introspection endpoint fails, or the revocation list cannot vouch (an SSF stream paused),
 * `KeycardHealthIndicator` reports `degraded` with a reason — never a token or a secret — and
 * recovers once the zone answers again. The zone's own status is unchanged: its keys still verify
 * and routes that do not demand freshness are served, so the indicator stays `up` (a readiness gate
 * on it must not take every replica out while one endpoint of the zone blips). A real Nest app on
 * loopback, the real TestZone made to fail, real HTTP.
 */
import { describe, expect, it } from '@jest/globals';
import { TerminusModule } from '@nestjs/terminus';
import { KeycardHealthIndicator } from '../lib/health/index.js';
import type { ZoneFault } from '../lib/testing/test-zone.js';
import { expectOutcome } from './support/denials.js';
import { PRM } from './support/forge.js';
import { HealthController } from './support/health-controller.js';
import { send } from './support/http.js';
import { revocationSuite, type RevocationInstance } from './support/revocation-app.js';

const WITH_HEALTH = { imports: [TerminusModule.forRoot({ logger: false })], providers: [KeycardHealthIndicator], controllers: [HealthController] };
const SSF_AUD = 'https://api.example.com/ssf';
const SECRET = 'ssf-push-secret-0123456789';
const STREAM_ID = 'stream-1';
const STREAM_UPDATED = 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated';
/** What the API authenticates with at the zone (test/support/revocation-app.ts): never in a health answer. */
const API_SECRET = 'revocation-api-secret';

type Keycard = Record<string, unknown> & { introspection?: Record<string, unknown> };
async function health(at: RevocationInstance): Promise<{ status: number; keycard: Keycard; text: string }> {
  const res = await send(at.url, 'GET', '/health');
  const body = res.json as { details: { keycard: Keycard } };
  return { status: res.status, keycard: body.details.keycard, text: res.text };
}

const suite = revocationSuite();

describe('health indicator: freshness (introspection, revocation list)', () => {
  it.each([
    ['HTTP 500', { kind: 'status', status: 500 }, /HTTP 500/],
    ['a connection reset', { kind: 'reset' }, /could not be reached/],
    ['active "yes"', { kind: 'json', body: { active: 'yes' } }, /active member is not a boolean/],
    ['text/html', { kind: 'status', status: 200, contentType: 'text/html', body: '<html></html>' }, /not a JSON object/],
    ['a redirect', { kind: 'redirect', location: 'http://127.0.0.1:9/elsewhere' }, /redirected/],
  ] as [string, ZoneFault, RegExp][])('X32 health: introspection fails (%s) → introspection "degraded" with the reason, no token or secret, the zone up; recovers once the zone answers again', async (_name, fault, reason) => {
    const at = await suite.instance({ extra: WITH_HEALTH });
    const token = suite.zone.issueToken({ scope: 'orders:read' });
    const before = await health(at);
    expect(before.status).toBe(200);
    expect(before.keycard).toMatchObject({ status: 'up', issuer: suite.zone.issuer });
    expect((await at.get(token, '/fresh')).status).toBe(200);
    expect((await health(at)).keycard.introspection).toEqual({ status: 'up' });

    suite.zone.faults.introspection = fault;
    expectOutcome(await at.get(token, '/fresh'), '503 RA', PRM, [token, API_SECRET], at.logger.lines);
    const degraded = await health(at);
    expect(degraded.status).toBe(200); // keys still verify, other routes are served: degraded, not down
    expect(degraded.keycard).toMatchObject({ status: 'up', introspection: { status: 'degraded', reason: expect.stringMatching(reason), since: expect.any(String) } });
    for (const secret of [token, API_SECRET, Buffer.from(`revocation-api:${API_SECRET}`).toString('base64')]) expect(degraded.text).not.toContain(secret);
    expect((await at.get(token)).status).toBe(200);

    // Recovery without traffic: the indicator asks the endpoint again once its failure window (2 s) has passed.
    delete suite.zone.faults.introspection;
    at.clock.offsetMs += 2_000;
    const recovered = await health(at);
    expect(recovered.keycard.introspection).toEqual({ status: 'up' });
    expect(suite.zone.introspection.requests.some((request) => request.form.token === token)).toBe(true);
    expect(at.logger.lines.some((line) => line.includes(token) || line.includes(API_SECRET))).toBe(false);
  });

  it('X32 health: a freshness call that succeeds again clears the degraded state at once; our credentials refused → degraded with that reason', async () => {
    const at = await suite.instance({ extra: WITH_HEALTH });
    const token = suite.zone.issueToken({ scope: 'orders:read' });
    suite.zone.faults.introspection = { kind: 'status', status: 503 };
    expect((await at.get(token, '/fresh')).status).toBe(503);
    expect((await health(at)).keycard.introspection).toMatchObject({ status: 'degraded', reason: expect.stringMatching(/HTTP 503/) });
    delete suite.zone.faults.introspection;
    expect((await at.get(token, '/fresh')).status).toBe(200);
    expect((await health(at)).keycard.introspection).toEqual({ status: 'up' });

    suite.zone.faults.introspection = { kind: 'status', status: 401, body: '{"error":"invalid_client"}' };
    expect((await at.get(token, '/fresh')).status).toBe(500);
    const refused = await health(at);
    expect(refused.keycard.introspection).toMatchObject({ status: 'degraded', reason: expect.stringMatching(/refused our client credentials/) });
    expect(refused.text).not.toContain(API_SECRET);
  });

  it('X20 health: an SSF stream paused → revocation "degraded" with the reason ssf_stream_paused; enabled → up', async () => {
    const at = await suite.instance({ extra: WITH_HEALTH, revocation: { ssf: { audience: SSF_AUD, push: { authorization: SECRET }, streamId: STREAM_ID } } });
    const tx = suite.zone.ssfTransmitter({ audience: SSF_AUD, pushUrl: `${at.url}/ssf/events`, authorization: SECRET });
    expect((await health(at)).keycard.revocation).toEqual({ status: 'up', reasons: [], entries: 0 });
    expect((await tx.push(tx.set(STREAM_UPDATED, { status: 'paused' }, { format: 'opaque', id: STREAM_ID }))).status).toBe(202);
    const paused = await health(at);
    expect(paused.status).toBe(200);
    expect(paused.keycard).toMatchObject({ status: 'up', revocation: { status: 'degraded', reasons: ['ssf_stream_paused'] } });
    expect(paused.text).not.toContain(SECRET);
    expect((await tx.push(tx.set(STREAM_UPDATED, { status: 'enabled' }, { format: 'opaque', id: STREAM_ID }))).status).toBe(202);
    expect((await health(at)).keycard.revocation).toEqual({ status: 'up', reasons: [], entries: 0 });
  });
});
