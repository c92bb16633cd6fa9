import type { TestZone } from '../lib/testing/index.js';

export interface TourStep {
  title: string;
  ok: boolean;
  detail: string;
}

async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, challenge: res.headers.get('www-authenticate'), text };
}

/**
 * A scripted agent calling the sample API on the local zone: discovery, a challenge, a token,
 * a scoped call, a scope refusal. Each step says what was expected and what came back.
 */
export async function runTour(api: string, zone: TestZone, resource: string): Promise<TourStep[]> {
  const steps: TourStep[] = [];
  const step = (title: string, ok: boolean, detail: string) => steps.push({ title, ok, detail });

  const prm = await call(`${api}/.well-known/oauth-protected-resource`);
  step('Discovery: GET /.well-known/oauth-protected-resource → 200', prm.status === 200, prm.text);

  const anonymous = await call(`${api}/api/data`);
  step('No token: GET /api/data → 401 with a Bearer challenge', anonymous.status === 401, `WWW-Authenticate: ${anonymous.challenge}`);

  const readToken = zone.issueToken({ aud: resource, client_id: 'agent-a', sub: 'alice', sid: 'sess-1', scope: 'read' });
  const read = await call(`${api}/api/data`, { headers: { authorization: `Bearer ${readToken}` } });
  step('Agent A with a read token: GET /api/data → 200, attributed to agent-a for alice', read.status === 200 && read.text.includes('"agent":"agent-a"'), read.text);

  const write = await call(`${api}/api/data`, {
    method: 'POST',
    headers: { authorization: `Bearer ${readToken}`, 'content-type': 'application/json' },
    body: '{"name":"new"}',
  });
  step('Agent A writes with the read token: POST /api/data → 403 insufficient_scope', write.status === 403, `WWW-Authenticate: ${write.challenge}`);

  const writeToken = zone.issueToken({ aud: resource, client_id: 'agent-a', sub: 'alice', sid: 'sess-1', scope: 'write' });
  const written = await call(`${api}/api/data`, {
    method: 'POST',
    headers: { authorization: `Bearer ${writeToken}`, 'content-type': 'application/json' },
    body: '{"name":"new"}',
  });
  step('Agent A with a write token: POST /api/data → 201', written.status === 201, written.text);

  const forged = await call(`${api}/api/data`, { headers: { authorization: `Bearer ${readToken.slice(0, -6)}AAAAAA` } });
  step('A forged token: GET /api/data → 401 invalid_token', forged.status === 401 && (forged.challenge ?? '').includes('invalid_token'), `WWW-Authenticate: ${forged.challenge}`);
  return steps;
}
