/**
 * Issue 24, per-request tokens: a token the guard has never seen is verified without a promise
 * while the zone's keys are fresh (the key store answers passport-jwt at once, validate() runs in
 * the same tick), and every refusal on that path is still the catalogue's answer. The first token,
 * before any key fetch, and a token with an unknown kid take the asynchronous path.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import jsonwebtoken from 'jsonwebtoken';
import { Strategy } from 'passport-jwt';
import { TestZone } from '../lib/testing/index.js';
import { KeycardStrategy } from '../lib/resource-server/keycard.strategy.js';
import { expectOutcome, onScopedRoute } from './support/denials.js';
import { bearer, baseClaims, PRM, R, T0_HEADER, zoneSigned } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, scopeOf, startApp, type RunningApp } from './support/keycard-app.js';

/** A refusal on GET /orders names the route's scope (Q12). */
const REFUSED = onScopedRoute('401 IT', scopeOf('GET', '/orders'));

describe.each(ADAPTERS)('a token new to the guard, over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  let verify: { mock: { results: { type: string; value: unknown }[] }; mockRestore(): void };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
    verify = jest.spyOn(api.app.get(KeycardStrategy), 'verify');
  });
  afterAll(async () => {
    verify.mockRestore();
    await api?.close();
    await zone?.stop();
  });

  const fresh = (overrides: Record<string, unknown> = {}, header: Record<string, unknown> = T0_HEADER) =>
    zoneSigned(zone, header, baseClaims(zone, overrides));
  const get = (token: string) => send(api.url, 'GET', '/orders', bearer(token));
  const lastResult = () => verify.mock.results[verify.mock.results.length - 1];

  it('the first token, before the zone keys are fetched, is verified asynchronously → 200; the next new tokens synchronously → 200', async () => {
    const first = fresh();
    expectOutcome(await get(first), '200', PRM, [first], api.logger.lines);
    expect(lastResult().value).toBeInstanceOf(Promise);
    for (const subject of ['user-2', 'user-3']) {
      const token = fresh({ sub: subject });
      expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
      expect(lastResult()).toMatchObject({ type: 'return', value: expect.objectContaining({ subject }) });
      expect(lastResult().value).not.toBeInstanceOf(Promise);
    }
  });

  it.each([
    ['expired', { exp: Math.floor(Date.now() / 1000) - 3600 }],
    ['for another audience', { aud: 'https://other.example.com' }],
    ['from another issuer', { iss: 'https://evil.example.com' }],
    ['without jti', { jti: undefined }],
  ])('a new token %s is refused on the synchronous path → 401 IT, nothing leaked', async (_name, overrides) => {
    const token = fresh(overrides);
    expectOutcome(await get(token), REFUSED, PRM, [token], api.logger.lines);
    expect(lastResult().type).toBe('throw');
  });

  it('a new token whose signature does not verify is refused on the synchronous path → 401 IT', async () => {
    const token = fresh();
    const forged = `${token.slice(0, token.lastIndexOf('.') + 1)}${fresh({ sub: 'other' }).split('.')[2]}`;
    expectOutcome(await get(forged), REFUSED, PRM, [forged], api.logger.lines);
    expect(lastResult().type).toBe('throw');
  });

  it('a new token with a kid the zone does not publish takes the asynchronous path (one refetch per cooldown) → 401 IT', async () => {
    const token = fresh({}, { ...T0_HEADER, kid: 'not-published' });
    expectOutcome(await get(token), REFUSED, PRM, [token], api.logger.lines);
    expect(lastResult().value).toBeInstanceOf(Promise);
  });

  it('an ES256 token new to the guard is verified synchronously → 200', async () => {
    const token = zoneSigned(zone, { ...T0_HEADER, alg: 'ES256', kid: 'ec1' }, baseClaims(zone, { sub: 'user-ec' }), 'ec1', 'ES256');
    expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
    expect(lastResult()).toMatchObject({ type: 'return', value: expect.objectContaining({ subject: 'user-ec' }) });
  });
});

/**
 * Issue 24: passport-jwt's verifier seam. The module's strategy hands passport-jwt's
 * `JwtStrategy.JwtVerifier` its own decoded token; every other key still goes to jsonwebtoken, so
 * an app's own passport-jwt strategy in the same process is unchanged, and a verifier replaced
 * later makes the module refuse (fail closed), never accept unchecked.
 */
describe('passport-jwt verifier seam', () => {
  let zone: TestZone;
  let api: RunningApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const fresh = (overrides: Record<string, unknown> = {}) => zoneSigned(zone, T0_HEADER, baseClaims(zone, overrides));
  const get = (token: string) => send(api.url, 'GET', '/orders', bearer(token));

  it("an app's own passport-jwt strategy in the same process still verifies with jsonwebtoken (its key is not the module's)", async () => {
    expectOutcome(await get(fresh()), '200', PRM, [], api.logger.lines);
    const verifier = (Strategy as unknown as { JwtVerifier: (...args: unknown[]) => void }).JwtVerifier;
    const secret = 'an-app-secret-of-32-bytes-or-more!!';
    const token = jsonwebtoken.sign({ sub: 'app-user' }, secret, { algorithm: 'HS256' });
    const outcome = await new Promise<{ error: unknown; payload: unknown }>((resolve) => {
      verifier(token, secret, { algorithms: ['HS256'] }, (error: unknown, payload: unknown) => resolve({ error, payload }));
    });
    expect(outcome.error).toBeNull();
    expect(outcome.payload).toMatchObject({ sub: 'app-user' });
    const wrong = await new Promise<unknown>((resolve) => {
      verifier(token, 'another-secret-of-32-bytes-or-more!!', { algorithms: ['HS256'] }, (error: unknown) => resolve(error));
    });
    expect(wrong).toBeInstanceOf(jsonwebtoken.JsonWebTokenError);
  });

  it("a verifier replaced after the module's (jsonwebtoken itself) refuses the module's tokens → 401 IT, nothing leaked", async () => {
    const holder = Strategy as unknown as { JwtVerifier: (...args: unknown[]) => unknown };
    const installed = holder.JwtVerifier;
    holder.JwtVerifier = (token: unknown, key: unknown, options: unknown, callback: unknown) =>
      (jsonwebtoken.verify as (...args: unknown[]) => unknown)(token, key, options, callback);
    try {
      const token = fresh({ sub: 'user-replaced' });
      expectOutcome(await get(token), REFUSED, PRM, [token], api.logger.lines);
    } finally {
      holder.JwtVerifier = installed;
    }
    const token = fresh({ sub: 'user-restored' });
    expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
  });
});

/**
 * Issue 24: a zone's header, decoded once. Every token a zone signs with one key carries the same
 * header text; the strategy keeps the decoded header of texts whose signature verified and decodes
 * only the payload of later tokens. The header rules still run on every token, a text that differs
 * by one character is decoded and checked in full, and only a zone can add a text.
 */
describe('header texts of verified tokens', () => {
  let zone: TestZone;
  let api: RunningApp;
  let headers: { size: number };

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp('express', { zoneUrl: zone.issuer, resource: R });
    headers = (api.app.get(KeycardStrategy) as unknown as { signedHeaders: { size: number } }).signedHeaders;
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const signed = (header: Record<string, unknown>, overrides: Record<string, unknown> = {}) => zoneSigned(zone, header, baseClaims(zone, overrides));
  const get = (token: string) => send(api.url, 'GET', '/orders', bearer(token));
  const headerText = (token: string) => token.slice(0, token.indexOf('.'));
  const withHeaderText = (token: string, text: string) => `${text}${token.slice(token.indexOf('.'))}`;

  it('a header text is kept only once a zone signature over it verified; a forged signature over a new text adds nothing', async () => {
    const header = { ...T0_HEADER, 'x-issue': 24 };
    const valid = signed(header);
    const forged = `${valid.slice(0, valid.lastIndexOf('.') + 1)}${signed(header, { sub: 'other' }).split('.')[2]}`;
    const before = headers.size;
    expectOutcome(await get(forged), REFUSED, PRM, [forged], api.logger.lines);
    expect(headers.size).toBe(before);
    expectOutcome(await get(valid), '200', PRM, [valid], api.logger.lines);
    expect(headers.size).toBe(before + 1);
    const again = signed(header, { sub: 'user-again' });
    expectOutcome(await get(again), '200', PRM, [again], api.logger.lines);
    expect(headers.size).toBe(before + 1);
  });

  it('B25 a kept header text respelled (padding, +, /, appended junk) is checked in full → 401 IT', async () => {
    const token = signed(T0_HEADER);
    expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
    const text = headerText(token);
    for (const respelled of [`${text}=`, `${text}==`, `${text.slice(0, -1)}+`, `${text.slice(0, -1)}/`, `${text}!`, `${text}$`]) {
      const sent = withHeaderText(signed(T0_HEADER, { sub: 'user-respelled' }), respelled);
      expectOutcome(await get(sent), REFUSED, PRM, [sent], api.logger.lines);
    }
  });

  it('B24 a header text that differs from a kept one by one character is decoded and judged in full → 401 IT', async () => {
    const token = signed(T0_HEADER);
    expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
    const text = headerText(token);
    const last = text[text.length - 1];
    const other = `${text.slice(0, -1)}${last === 'A' ? 'B' : 'A'}`;
    const sent = withHeaderText(signed(T0_HEADER, { sub: 'user-other' }), other);
    expectOutcome(await get(sent), REFUSED, PRM, [sent], api.logger.lines);
  });

  it('B1 alg none, empty signature, under the kid of a kept header → 401 IT (the header rules run on every token)', async () => {
    const token = signed(T0_HEADER);
    expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
    const none = `${Buffer.from(JSON.stringify({ ...T0_HEADER, alg: 'none' })).toString('base64url')}.${token.split('.')[1]}.`;
    expectOutcome(await get(none), REFUSED, PRM, [none], api.logger.lines);
  });

  it('C29 eighty zone-signed tokens, each with a header text of its own → 200 each, and at most 64 texts kept', async () => {
    for (let n = 0; n < 80; n++) {
      const token = signed({ ...T0_HEADER, 'x-n': n }, { sub: `user-${n}` });
      expectOutcome(await get(token), '200', PRM, [token], api.logger.lines);
    }
    expect(headers.size).toBe(64);
  });
});
