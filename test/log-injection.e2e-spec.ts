/**
 * Log injection (CWE-117): claims, paths and names a client chose reach the module's log lines
 * escaped and capped, whichever logger prints them. A validly signed token is enough to choose a
 * `client_id` (dynamic client registration) and a `sub` (a self-chosen username).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ConsoleLogger, Controller, Get, Module, Param, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { KeycardModule, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type AdapterName, type RunningApp } from './support/keycard-app.js';

@Controller()
class ScopedController {
  @Get('orders')
  @RequireScopes('orders:read')
  list() {
    return [];
  }

  @Get('items/:id')
  @RequireScopes('items:read')
  one(@Param('id') id: string) {
    return { id };
  }
}

/** The tester's claims: a forged `[Nest]` line, an ESC colour sequence, a bare CR and U+202E. */
const HOSTILE = { client_id: 'agent-a\n[Nest] 1 - FAKE LOG admin granted', sub: 'alice\x1b[31mRED\u202eevil\r\nINJECTED' };
/** What no printed log line may hold raw: C0 (CR, LF, ESC …), DEL, C1, U+2028/2029, bidi controls. */
const RAW = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const settle = () => new Promise((r) => setTimeout(r, 50));

function expectSafeLines(lines: readonly string[], token: string): void {
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    expect(line).not.toMatch(RAW);
    expect(line).not.toContain(token.split('.')[2]);
    expect(line.length).toBeLessThan(2_000);
  }
}

describe.each(ADAPTERS)('log injection over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, { controllers: [ScopedController] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('a hostile client_id and sub on a scoped route: 403 with its challenge; the denial line escapes them, the audit record keeps them', async () => {
    const token = zone.issueToken({ ...HOSTILE, scope: 'profile' });
    api.logger.lines.length = 0;
    const res = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
    await settle();
    expectOutcome(res, '403:orders:read', PRM, [token], api.logger.lines);
    expectSafeLines(api.logger.lines, token);
    const denial = api.logger.lines.find((l) => l.startsWith('denied '));
    expect(denial).toBe(
      'denied GET /orders status=403 reason=insufficient_scope agent=agent-a\\n[Nest] 1 - FAKE LOG admin granted ' +
        `user=alice\\u001b[31mRED\\u202eevil\\r\\nINJECTED jti=${JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).jti}`,
    );
    // The audit record is JSON that gives the claims back exactly: escaped as JSON, not rewritten.
    const audit = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit).toEqual([expect.objectContaining({ agent: HOSTILE.client_id, user: HOSTILE.sub, status: 403, reason: 'insufficient_scope' })]);
  });

  // Tokens over 8 192 characters are refused before they are read (token_too_long): about the longest sub that gets a denial line.
  it('a 3 500-character sub costs a log line a few hundred characters, in the denial line and in the audit record', async () => {
    const token = zone.issueToken({ client_id: 'agent-long', sub: `bob${'\u202e'.repeat(500)}${'x'.repeat(3_000)}`, scope: 'profile' });
    api.logger.lines.length = 0;
    const res = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
    await settle();
    expectOutcome(res, '403:orders:read', PRM, [token], api.logger.lines);
    expectSafeLines(api.logger.lines, token);
    expect(api.logger.lines.find((l) => l.startsWith('denied '))).toContain('user=bob\\u202e\\u202e');
    const audit = api.logger.lines.find((l) => l.startsWith('{"event":"keycard.audit"'));
    expect((JSON.parse(audit!) as { user: string }).user).toMatch(/^bob\u202e+…$/);
  });
});

/** Nest's text ConsoleLogger, as an app gets it by default: what it would write, one string per record. */
class RecordingConsoleLogger extends ConsoleLogger {
  readonly printed: string[] = [];
  protected override formatMessage(...args: Parameters<ConsoleLogger['log']> & unknown[]): string {
    const text = (super.formatMessage as (...a: unknown[]) => string)(...args);
    this.printed.push(text);
    return ''; // written to stdout by the caller: keep the test output quiet
  }
}

async function startWithConsoleLogger(adapter: AdapterName, zone: TestZone, logger: ConsoleLogger): Promise<{ app: INestApplication; url: string }> {
  @Module({ imports: [KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, auditLog: true, logger })], controllers: [ScopedController] })
  class AppModule {}
  const app = await NestFactory.create(AppModule, adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(), { logger: false, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}` };
}

describe.each(ADAPTERS)('log injection through Nest’s text ConsoleLogger over %s', (adapter) => {
  let zone: TestZone;
  let api: { app: INestApplication; url: string };
  const logger = new RecordingConsoleLogger('Keycard', { colors: false });
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startWithConsoleLogger(adapter, zone, logger);
  });
  afterAll(async () => {
    await api?.app.close();
    await zone?.stop();
  });

  it('every record it prints is one line, with no raw control or bidi character and no token', async () => {
    const token = zone.issueToken({ ...HOSTILE, scope: 'profile' });
    logger.printed.length = 0;
    const res = await send(api.url, 'GET', '/orders', [['Authorization', `Bearer ${token}`]]);
    await settle();
    expectOutcome(res, '403:orders:read', PRM, [token], logger.printed);
    expect(logger.printed).toHaveLength(2); // the denial, the audit record
    for (const record of logger.printed) expect(record.endsWith('\n') && record.indexOf('\n') === record.length - 1).toBe(true);
    expectSafeLines(logger.printed.map((r) => r.slice(0, -1)), token);
    expect(logger.printed.join('')).not.toContain('\n[Nest] 1 - FAKE LOG');
    const audit = logger.printed.find((r) => r.includes('{"event":"keycard.audit"'))!;
    expect(JSON.parse(audit.slice(audit.indexOf('{'), audit.lastIndexOf('}') + 1))).toEqual(
      expect.objectContaining({ agent: HOSTILE.client_id, user: HOSTILE.sub }),
    );
  });
});
