/**
 * Attack trial of issue 24's per-request path (trial24b): the fingerprint-keyed verified-token
 * cache, the `b64token` grammar moved from the HTTP extractor into the verification, and the
 * one-time look at pino-http's request loggers that the HTTP token reader makes at its first
 * token. A real Nest app on loopback, the real local zone, pino-http writing to a captured stream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { pinoHttp } from 'pino-http';
import { Writable } from 'node:stream';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R, T0_HEADER, baseClaims, bearer, zoneSigned } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

/** Every line written to it, one string each. */
class CapturedStream extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(...String(chunk).split('\n').filter(Boolean));
    done();
  }
}

let zone: TestZone;
beforeAll(async () => {
  zone = await TestZone.start({ audience: R });
});
afterAll(async () => {
  await zone.stop();
});

describe.each(ADAPTERS)('trial24b (%s)', (adapter) => {
  let app: RunningApp | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('M21 a first token outside b64token does not use up the look at pino-http: the module still says, once, that the request logger writes tokens', async () => {
    const stream = new CapturedStream();
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R }, { configure: (nest) => nest.use(pinoHttp({}, stream)) });
    // The attacker's first request: a token JSON escapes (`"`, `\`), so it is never found verbatim in the logger's bindings.
    const junk = 'ab"c\\d';
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(junk)), '401 IT scope=orders:read', PRM, [junk], app.logger.lines);
    const token = zone.issueToken({ scope: 'orders:read' });
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
    await new Promise((r) => setTimeout(r, 50));
    expect(stream.lines.some((line) => line.includes(`Bearer ${token}`))).toBe(true); // the fault the warning is about
    const warnings = app.logger.lines.filter((line) => line.includes('keycardPinoHttpOptions()'));
    expect(warnings).toHaveLength(1);
  });

  it('M18 a token sharing a cached token\'s signature (same fingerprint) under another header or payload is refused, and the victim stays cached', async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
    const victim = zoneSigned(zone, T0_HEADER, baseClaims(zone, { scope: 'orders:read' }));
    for (let i = 0; i < 3; i++) expectOutcome(await send(app.url, 'GET', '/orders', bearer(victim)), '200', PRM, [victim], app.logger.lines);
    const [header, payload, signature] = victim.split('.');
    const otherPayload = Buffer.from(JSON.stringify(baseClaims(zone, { scope: 'orders:read admin', sub: 'mallory' }))).toString('base64url');
    const otherHeader = Buffer.from(JSON.stringify({ ...T0_HEADER, x: 1 })).toString('base64url');
    for (const forged of [`${header}.${otherPayload}.${signature}`, `${otherHeader}.${payload}.${signature}`, `${header}.${payload}x.${signature}`]) {
      expectOutcome(await send(app.url, 'GET', '/admin', bearer(forged)), '401 IT scope=admin', PRM, [forged, victim], app.logger.lines);
    }
    // Respelt signatures (M18): the last character's unused bits, and padding.
    const last = signature[signature.length - 1];
    const respelt = `${header}.${payload}.${signature.slice(0, -1)}${String.fromCharCode(last.charCodeAt(0) ^ 1)}`;
    for (const forged of [respelt, `${victim}=`, `${victim}==`]) {
      expectOutcome(await send(app.url, 'GET', '/orders', bearer(forged)), '401 IT scope=orders:read', PRM, [forged, victim], app.logger.lines);
    }
    const lines = app.logger.lines.length;
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(victim)), '200', PRM, [victim], app.logger.lines);
    expect(app.logger.lines.slice(lines).join('\n')).not.toContain('signature_invalid');
  });

  it('M18 a cached token is not admitted past its exp', async () => {
    app = await startApp(adapter, { zoneUrl: zone.issuer, resource: R });
    const now = Math.floor(Date.now() / 1000);
    const token = zoneSigned(zone, T0_HEADER, baseClaims(zone, { exp: now + 5 }));
    for (let i = 0; i < 3; i++) expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '200', PRM, [token], app.logger.lines);
    app.clock.offsetMs = 10 * 60_000;
    expectOutcome(await send(app.url, 'GET', '/orders', bearer(token)), '401 IT scope=orders:read', PRM, [token], app.logger.lines);
  });
});
