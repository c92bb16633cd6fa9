/**
 * Catalogue W1 under attack: a client that hangs up before the answer. The handler of an admitted
 * call runs (its effects happen) whether or not the client is still there to read the answer, so
 * the audit record of the call is written all the same, on Express and Fastify.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get } from '@nestjs/common';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

/** Counts the handler runs that completed, to wait for the last one. */
let completed = 0;

@Controller()
class SlowOrders {
  @Get('slow')
  @RequireScopes('orders:read')
  async slow() {
    await sleep(300);
    completed += 1;
    return { done: true };
  }
}

/** A GET the client abandons (socket destroyed) after `afterMs`, before any answer. */
function abandon(url: string, path: string, token: string, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const target = new URL(path, url);
    const req = request({ host: target.hostname, port: target.port, path, headers: { Authorization: `Bearer ${token}` }, agent: false });
    req.on('error', () => resolve());
    req.on('response', () => resolve());
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, afterMs);
  });
}

describe.each(ADAPTERS)('audit records of abandoned requests over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true }, { controllers: [SlowOrders] });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  /** The audit records written so far, parsed. */
  function records(): Record<string, unknown>[] {
    return api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async function abandonAndWait(token: string): Promise<void> {
    const before = completed;
    await abandon(api.url, '/slow', token, 100);
    for (let i = 0; i < 100 && completed === before; i++) await sleep(20);
    expect(completed).toBe(before + 1); // the handler ran
    await sleep(50);
  }

  it('W1 a client that hangs up while its token is verified (a first JWKS fetch, slowed): the admitted call has its audit record, aborted: true', async () => {
    zone.faults.jwks = { kind: 'slow', delayMs: 300 };
    const token = zone.issueToken({ client_id: 'agent-gone', sub: 'bob', scope: 'orders:read' });
    await abandonAndWait(token);
    delete zone.faults.jwks;
    expect(records()).toEqual([expect.objectContaining({ type: 'admitted', agent: 'agent-gone', user: 'bob', route: '/slow', status: 200, aborted: true })]);
    expect(api.logger.lines.some((l) => l.includes(token.split('.')[2]!))).toBe(false);
  });

  it('W1 a client that hangs up while the handler runs: the admitted call has its audit record, aborted: true; an answered one has no aborted field', async () => {
    const token = zone.issueToken({ client_id: 'agent-gone-2', sub: 'bob', scope: 'orders:read' });
    api.logger.lines.length = 0;
    await abandonAndWait(token);
    expect(records()).toEqual([expect.objectContaining({ type: 'admitted', agent: 'agent-gone-2', route: '/slow', aborted: true })]);
    api.logger.lines.length = 0;
    const answered = await send(api.url, 'GET', '/slow', [['Authorization', `Bearer ${token}`]]);
    expect(answered.status).toBe(200);
    await sleep(50);
    expect(records()).toEqual([expect.objectContaining({ type: 'admitted', agent: 'agent-gone-2', status: 200 })]);
    expect(records()[0]!.aborted).toBeUndefined();
    expect(api.logger.lines.some((l) => l.includes(token.split('.')[2]!))).toBe(false);
  });
});
