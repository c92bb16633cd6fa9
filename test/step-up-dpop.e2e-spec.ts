/**
 * T24, the DPoP-scheme case: an RFC 9470 step-up refusal of a request that used the `DPoP` scheme
 * (§H mode H-1, `dpop: 'allowed'`) carries `error="insufficient_user_authentication"` and
 * `acr_values` on the `DPoP` challenge only; the `Bearer` challenge beside it names no error
 * (RFC 9449 §7.2: the error goes with the scheme the request used). And the converse for a request
 * with the `Bearer` scheme. Real apps on both adapters, a real TestZone, real proofs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get } from '@nestjs/common';
import { DpopKey, RequireAuthentication } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { challengesOf, dpopHeaders, expectDpopRefusal } from './support/dpop.js';
import { PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

const ACR = 'urn:kc:mfa urn:kc:phr';
const STEP_UP = 'A stronger or more recent user authentication is required';

@Controller()
class StrongController {
  @Get('strong')
  @RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'] })
  strong() {
    return { ok: true };
  }

  @Get('recent')
  @RequireAuthentication({ acr: ['urn:kc:mfa', 'urn:kc:phr'], maxAge: 300 })
  recent() {
    return { ok: true };
  }
}

describe.each(ADAPTERS)('T24 step-up on the DPoP scheme over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let required: RunningApp;
  const key = DpopKey.generate('ES256');

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: 'allowed' }, { controllers: [StrongController] });
    required = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, dpop: 'required' }, { controllers: [StrongController] });
  });
  afterAll(async () => {
    await required?.close();
    await api?.close();
    await zone?.stop();
  });

  const get = (headers: [string, string][]) => send(api.url, 'GET', '/strong', headers);

  it('T24 DPoP: a DPoP-bound token with acr urn:kc:pwd and a valid proof → 401, insufficient_user_authentication and acr_values on the DPoP challenge, none on the Bearer one', async () => {
    const token = zone.tokenFor({ dpopKey: key, claims: { acr: 'urn:kc:pwd' } });
    const headers = dpopHeaders(key, token, { path: '/strong' });
    const res = await get(headers);
    expectDpopRefusal(res, { dpopError: 'insufficient_user_authentication', description: STEP_UP, prm: PRM, secrets: [token, headers[1][1]], logs: api.logger.lines });
    const challenges = challengesOf(res);
    expect(challenges.get('dpop')?.get('acr_values')).toBe(ACR);
    expect([...challenges.get('bearer')!.keys()]).toEqual(['resource_metadata']);
    const stronger = zone.tokenFor({ dpopKey: key, claims: { acr: 'urn:kc:mfa' } });
    expect((await get(dpopHeaders(key, stronger, { path: '/strong' }))).status).toBe(200);
  });

  it('T24 Bearer on the same app: the error and acr_values sit on the Bearer challenge, the DPoP challenge carries none', async () => {
    const token = zone.tokenFor({ claims: { acr: 'urn:kc:pwd' } });
    const res = await get([['Authorization', `Bearer ${token}`]]);
    expectDpopRefusal(res, { bearerError: 'insufficient_user_authentication', description: STEP_UP, prm: PRM, secrets: [token], logs: api.logger.lines });
    const challenges = challengesOf(res);
    expect(challenges.get('bearer')?.get('acr_values')).toBe(ACR);
    expect(challenges.get('dpop')?.has('acr_values')).toBe(false);
  });

  it('T24 DPoP required: the one DPoP challenge carries the error, acr_values and max_age', async () => {
    const token = zone.tokenFor({ dpopKey: key, claims: { acr: 'urn:kc:pwd', auth_time: Math.floor(Date.now() / 1000) - 900 } });
    const headers = dpopHeaders(key, token, { path: '/recent' });
    const res = await send(required.url, 'GET', '/recent', headers);
    expectDpopRefusal(res, { dpopError: 'insufficient_user_authentication', description: STEP_UP, prm: PRM, bearer: false, secrets: [token, headers[1][1]], logs: required.logger.lines });
    expect(Object.fromEntries(challengesOf(res).get('dpop')!)).toMatchObject({ acr_values: ACR, max_age: '300' });
  });
});
