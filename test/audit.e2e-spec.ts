/** Agent-attributed audit lines (`auditLog: true`). */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';

describe.each(ADAPTERS)('audit log over %s', (adapter) => {
  let zone: TestZone;
  let api: RunningApp;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startApp(adapter, { zoneUrl: zone.issuer, resource: R, auditLog: true });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('one line per request with agent, user, session, scopes, route, status, duration and denial reason — never the token', async () => {
    const token = zone.issueToken({ client_id: 'agent-audit', sub: 'bob', sid: 'sess-9', scope: 'orders:read' });
    const get = (path: string, t?: string) => send(api.url, 'GET', path, t ? [['Authorization', `Bearer ${t}`]] : []);
    api.logger.lines.length = 0;
    await get('/orders', token);
    await get('/admin', token);
    await get('/orders');
    await get('/orders', `${token.slice(0, -3)}abc`);
    await get('/health');
    await get('/orders?access_token=secret-in-query');
    await new Promise((r) => setTimeout(r, 50));
    const lines = api.logger.lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      expect.objectContaining({ agent: 'agent-audit', user: 'bob', session: 'sess-9', scopes: ['orders:read'], method: 'GET', route: '/orders', status: 200 }),
      expect.objectContaining({ agent: 'agent-audit', user: 'bob', route: '/admin', status: 403, reason: 'insufficient_scope' }),
      expect.objectContaining({ route: '/orders', status: 401, reason: 'no_credentials' }),
      expect.objectContaining({ route: '/orders', status: 401, reason: 'signature_invalid' }),
      expect.objectContaining({ route: '/health', status: 200 }),
      expect.objectContaining({ route: '/orders', status: 401 }),
    ]);
    for (const line of lines) expect(typeof line.durationMs).toBe('number');
    expect(lines[0].tokenId).toEqual(expect.any(String));
    const all = api.logger.lines.join('\n');
    expect(all).not.toContain(token);
    expect(all).not.toContain(token.split('.')[2]);
    expect(all).not.toContain('secret-in-query');
  });
});
