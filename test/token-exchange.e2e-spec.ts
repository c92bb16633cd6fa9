/**
 * The agent-backend half: TokenExchangeService against the local zone's real token endpoint over
 * loopback. Each test is named by its row in ../shared/security-catalogue.md §I.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientSecret, PrivateKeyJwt, TokenExchangeError, WorkloadIdentity, WorkloadTokenFileError, type KeycardModuleOptions } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { startExchangeContext } from './support/exchange-context.js';
import { bearer, R } from './support/forge.js';
import { GrantedController } from './support/granted-controller.js';
import { send } from './support/http.js';
import { ADAPTERS, startApp, type RunningApp } from './support/keycard-app.js';
import { itUnless } from './support/skip.js';

const AGENT_RESOURCE = 'https://agent.example.com';
const SECRET = 's3cret-value-1234';
const I2_SECRET = 'p@ss:w+rd %é';
const jwtClientKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
let workloadToken = 'workload-token-v1';
/** Called with every workload assertion the zone sees (to rotate a file at the moment of refusal). */
let onAssertion: (assertion: string) => void = () => undefined;
/** Whether `mkfifo` is there to make a FIFO with. */
const hasMkfifo = spawnSync('mkfifo', ['--help'], { stdio: 'ignore' }).error === undefined;

describe('TokenExchangeService', () => {
  let zone: TestZone;
  let dir: string;
  let contexts: Awaited<ReturnType<typeof startExchangeContext>>[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keycard-wi-'));
    zone = await TestZone.start({
      audience: AGENT_RESOURCE,
      resources: { [R]: ['orders:read', 'orders:write'] },
      clients: [
        { clientId: 'agent-a', clientSecret: SECRET },
        { clientId: 'cli 1', clientSecret: I2_SECRET },
        { clientId: 'agent-jwt', publicKey: jwtClientKey.publicKey },
        { clientId: 'agent-wi', acceptAssertion: (assertion) => (onAssertion(assertion), assertion === workloadToken) },
      ],
    });
  });
  afterEach(async () => {
    await Promise.all(contexts.map((c) => c.close()));
    contexts = [];
    zone.reset();
  });
  afterAll(async () => {
    await zone.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function service(clientCredentials: KeycardModuleOptions['clientCredentials'] = { clientId: 'agent-a', clientSecret: SECRET }) {
    const started = await startExchangeContext({ zoneUrl: zone.issuer, resource: AGENT_RESOURCE, clientCredentials });
    contexts.push(started);
    return started;
  }
  const userToken = (claims: Record<string, unknown> = {}) =>
    zone.issueToken({ sub: 'alice', client_id: 'user-app', sid: 'sess-1', scope: 'openid', ...claims });
  const request = (subjectToken = userToken(), extra: Record<string, unknown> = {}) => ({ subjectToken, resource: R, scope: 'orders:read', ...extra });

  /** Nothing secret in the error message or the logs (I30, INV7). */
  function expectNoLeak(texts: string[], secrets: string[]) {
    for (const secret of secrets) for (const text of texts) expect(text.includes(secret)).toBe(false);
  }

  async function rejection(promise: Promise<unknown>): Promise<TokenExchangeError> {
    const error = await promise.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(TokenExchangeError);
    return error as TokenExchangeError;
  }

  it('I1 one POST to the discovered token endpoint with the RFC 8693 form', async () => {
    const { service: exchange } = await service();
    const subject = userToken();
    const token = await exchange.exchange({ subjectToken: subject, resource: R, scope: 'orders:read' });
    expect(zone.counts.token).toBe(1);
    const [sent] = zone.tokenRequests;
    expect(sent.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(sent.headers.accept).toBe('application/json');
    expect(sent.form).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: subject,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource: R,
      scope: 'orders:read',
    });
    expect(token).toMatchObject({ tokenType: 'Bearer', expiresIn: 300, scope: 'orders:read', scopes: ['orders:read'], issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token' });
    expect(zone.verifyOwnToken(token.accessToken)).toMatchObject({ sub: 'alice', client_id: 'agent-a', aud: R, sid: 'sess-1' });
  });

  it('I1 actor_token_type is sent only with actor_token; audience and requested_token_type when given', async () => {
    const { service: exchange } = await service();
    const actorToken = userToken(); // the zone verifies an actor token as one it issued (RFC 8693 §2.2.2)
    await exchange.exchange(request(userToken(), { audience: 'orders', requestedTokenType: 'urn:ietf:params:oauth:token-type:access_token', actorToken }));
    expect(zone.tokenRequests[0].form).toMatchObject({ audience: 'orders', actor_token: actorToken, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' });
    await exchange.exchange(request());
    expect(zone.tokenRequests[1].form.actor_token_type).toBeUndefined();
  });

  it('I2 client_secret_basic form-urlencodes both parts before base64; no secret in the body', async () => {
    const { service: exchange } = await service(new ClientSecret('cli 1', I2_SECRET));
    await exchange.exchange(request());
    const [sent] = zone.tokenRequests;
    expect(sent.headers.authorization).toBe('Basic Y2xpKzE6cCU0MHNzJTNBdyUyQnJkKyUyNSVDMyVBOQ==');
    expect(sent.form.client_secret).toBeUndefined();
    expect(sent.form.client_id).toBeUndefined();
  });

  it('client_secret_post sends the credentials in the body, with no Authorization header', async () => {
    const { service: exchange } = await service(new ClientSecret('agent-a', SECRET, { method: 'client_secret_post' }));
    await exchange.exchange(request());
    expect(zone.tokenRequests[0].headers.authorization).toBeUndefined();
    expect(zone.tokenRequests[0].form).toMatchObject({ client_id: 'agent-a', client_secret: SECRET });
  });

  it('private_key_jwt: an RFC 7523 assertion for the token endpoint, unique per request', async () => {
    const { service: exchange } = await service(new PrivateKeyJwt({ clientId: 'agent-jwt', privateKey: jwtClientKey.privateKey, keyId: 'k1' }));
    const token = await exchange.exchange(request());
    expect(zone.verifyOwnToken(token.accessToken)).toMatchObject({ client_id: 'agent-jwt' });
    await exchange.exchange(request());
    const [a, b] = zone.tokenRequests.map((r) => JSON.parse(Buffer.from(r.form.client_assertion.split('.')[1], 'base64url').toString()));
    expect(a).toMatchObject({ iss: 'agent-jwt', sub: 'agent-jwt', aud: `${zone.origin}/token` });
    expect(a.exp - a.iat).toBeLessThanOrEqual(60);
    expect(a.jti).not.toBe(b.jti);
  });

  describe('workload identity', () => {
    it('I3 the token file is sent as a jwt-bearer client_assertion, trimmed, with no Authorization header', async () => {
      const file = join(dir, 'token');
      workloadToken = 'workload-token-v1';
      writeFileSync(file, `${workloadToken}\n`);
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      await exchange.exchange(request());
      expect(zone.tokenRequests[0].headers.authorization).toBeUndefined();
      expect(zone.tokenRequests[0].form).toMatchObject({
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: workloadToken,
      });
    });

    it('I4 a rewritten file (symlink-style swap) is read fresh for the next exchange', async () => {
      const file = join(dir, 'rotating');
      workloadToken = 'workload-token-v1';
      writeFileSync(file, workloadToken);
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      await exchange.exchange(request());
      workloadToken = 'workload-token-v2';
      writeFileSync(`${file}.new`, workloadToken);
      renameSync(`${file}.new`, file);
      await exchange.exchange(request());
      expect(zone.tokenRequests.map((r) => r.form.client_assertion)).toEqual(['workload-token-v1', 'workload-token-v2']);
    });

    it.each([
      ['missing', undefined],
      ['empty', ''],
      ['whitespace-only', '  \n'],
    ])('I5 file %s → config error, AS#0', async (_name, contents) => {
      const file = join(dir, `i5-${_name}`);
      if (contents !== undefined) writeFileSync(file, contents);
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      const error = await rejection(exchange.exchange(request()));
      expect(error.kind).toBe('config');
      expect(error).toBeInstanceOf(WorkloadTokenFileError);
      expect(error).toMatchObject({ path: file, retryAfterSeconds: 5, retryable: true });
      expect(zone.counts.token).toBe(0);
    });

    it('I5 file unreadable (a symlink to itself, ELOOP: chmod 000 would not stop root) → config error naming the code, AS#0', async () => {
      const file = join(dir, 'i5-loop');
      symlinkSync(file, file);
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      const error = await rejection(exchange.exchange(request()));
      expect(error).toBeInstanceOf(WorkloadTokenFileError);
      expect(error).toMatchObject({ kind: 'config', message: `workload token file ${file} cannot be read (ELOOP)` });
      expect(zone.counts.token).toBe(0);
    });

    it('I6 file over 64 KiB → config error, AS#0', async () => {
      const file = join(dir, 'big');
      writeFileSync(file, 'x'.repeat(65 * 1024));
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      const error = await rejection(exchange.exchange(request()));
      expect(error.kind).toBe('config');
      expect(error).toBeInstanceOf(WorkloadTokenFileError);
      expect(zone.counts.token).toBe(0);
    });

    it.each([
      ['a device that never ends (/dev/zero, stat size 0)', '/dev/zero'],
      ['a directory', undefined],
    ])('I6 a path that is not a regular file: %s → config error naming it, at once, AS#0', async (_name, path) => {
      const file = path ?? dir;
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      const error = await rejection(exchange.exchange(request()));
      expect(error.kind).toBe('config');
      expect(error.message).toContain('is not a regular file');
      expect(error).not.toBeInstanceOf(WorkloadTokenFileError); // a wrong path: the API answers 500, not 503
      expect(zone.counts.token).toBe(0);
    }, 10_000);

    describe.each(ADAPTERS)('behind a @Grant route over %s', (adapter) => {
      let app: RunningApp | undefined;
      afterEach(async () => {
        await app?.close();
        app = undefined;
      });
      const granted = async (file: string) => {
        app = await startApp(adapter, { zoneUrl: zone.issuer, resource: AGENT_RESOURCE, clientCredentials: new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }) }, { controllers: [GrantedController] });
        const token = userToken();
        return { token, res: await send(app.url, 'GET', '/granted', bearer(token)) };
      };

      it.each([
        ['missing', undefined],
        ['empty', ''],
        ['whitespace-only', ' \n\t\n'],
        ['over 64 KiB', `wi-contents-do-not-log.${'x'.repeat(64 * 1024)}`],
      ])('I5 I6 token file %s → 503 with Retry-After and the fixed description, one error line naming the path and not the contents, AS#0', async (name, contents) => {
        const file = join(dir, `route-${adapter}-${name.replaceAll(' ', '-')}`);
        if (contents !== undefined) writeFileSync(file, contents);
        const { token, res } = await granted(file);
        expect({ status: res.status, body: res.json }).toEqual({
          status: 503,
          body: { error: 'temporarily_unavailable', error_description: 'The service is temporarily unavailable, retry later' },
        });
        expect(res.headers['retry-after']).toBe('5');
        expect(res.headers['www-authenticate']).toBeUndefined();
        expect(zone.counts.token).toBe(0);
        const errors = app!.logger.levels.error;
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(file);
        expect(errors[0]).toContain('answered 503');
        expect(res.text).not.toContain(file);
        expectNoLeak([res.text, JSON.stringify(res.headers), ...app!.logger.lines], [token, 'do-not-log', 'xxxxxxxx']);
      });

      itUnless(hasMkfifo ? undefined : 'no mkfifo on this machine')('I6 token file path is a FIFO → refused at once (its open does not wait for a writer): 500 misconfigured, AS#0', async () => {
        const fifo = join(dir, `route-${adapter}-fifo`);
        execFileSync('mkfifo', [fifo]);
        const { token, res } = await granted(fifo);
        expect({ status: res.status, body: res.json }).toEqual({ status: 500, body: { error: 'server_error', error_description: 'The service is misconfigured' } });
        expect(zone.counts.token).toBe(0);
        expect(app!.logger.levels.error.join('\n')).toContain(`${fifo} is not a regular file`);
        expectNoLeak([res.text, ...app!.logger.lines], [token]);
      });
    });

    it('I7 invalid_client: exactly one retry when the file changed, none when it did not', async () => {
      const file = join(dir, 'i7');
      workloadToken = 'fresh-token';
      writeFileSync(file, 'stale-token');
      const { service: exchange } = await service(new WorkloadIdentity({ tokenFile: file, clientId: 'agent-wi' }));
      // The zone refuses the stale token; the kubelet has rotated the file by then.
      onAssertion = (assertion) => assertion === 'stale-token' && writeFileSync(file, 'fresh-token');
      await exchange.exchange(request());
      onAssertion = () => undefined;
      expect(zone.tokenRequests.map((r) => r.form.client_assertion)).toEqual(['stale-token', 'fresh-token']);

      zone.reset();
      writeFileSync(file, 'still-stale');
      workloadToken = 'unknown';
      const error = await rejection(exchange.exchange(request()));
      expect(error).toMatchObject({ code: 'invalid_client', status: 401 });
      expect(zone.counts.token).toBe(1);
    });

    it('WorkloadIdentity.eks() reads the documented variables in order', () => {
      const env = { AWS_WEB_IDENTITY_TOKEN_FILE: '/c', AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: '/b' };
      expect(WorkloadIdentity.eks({ env }).tokenFile).toBe('/b');
      expect(WorkloadIdentity.eks({ env: { ...env, KEYCARD_EKS_WORKLOAD_IDENTITY_TOKEN_FILE: '/a' } }).tokenFile).toBe('/a');
      expect(WorkloadIdentity.eks({ env: { AWS_WEB_IDENTITY_TOKEN_FILE: '/c' } }).tokenFile).toBe('/c');
      expect(() => WorkloadIdentity.eks({ env: {} })).toThrow('KEYCARD_EKS_WORKLOAD_IDENTITY_TOKEN_FILE');
    });
  });

  describe('responses', () => {
    it('I8 cached until expires_in − 30 s: an identical exchange → AS#0; after that → a new POST', async () => {
      const { service: exchange, clock } = await service();
      const subject = userToken();
      const first = await exchange.exchange(request(subject));
      expect(await exchange.exchange(request(subject))).toBe(first);
      expect(zone.counts.token).toBe(1);
      clock.offsetMs += 271_000;
      await exchange.exchange(request(subject));
      expect(zone.counts.token).toBe(2);
    });

    it('I8 a scope is a set (RFC 6749 §3.3): the same scopes in another order or repeated → the cached token, AS#0; the form names them once, sorted', async () => {
      const { service: exchange } = await service();
      const subject = userToken();
      const first = await exchange.exchange({ ...request(subject), scope: 'orders:write orders:read' });
      expect(await exchange.exchange({ ...request(subject), scope: ['orders:read', 'orders:write'] })).toBe(first);
      expect(await exchange.exchange({ ...request(subject), scope: 'orders:read orders:write orders:read' })).toBe(first);
      expect(zone.counts.token).toBe(1);
      expect(zone.tokenRequests[0].form.scope).toBe('orders:read orders:write');
      await exchange.exchange({ ...request(subject), scope: 'orders:read' });
      expect(zone.counts.token).toBe(2);
    });

    it('I8 never cached past the subject token expiry', async () => {
      const { service: exchange, clock } = await service();
      const subject = userToken({ exp: Math.floor(Date.now() / 1000) + 40 });
      await exchange.exchange(request(subject));
      clock.offsetMs += 41_000;
      await exchange.exchange(request(subject)).catch(() => undefined);
      expect(zone.counts.token).toBe(2);
    });

    it.each(['access_token', 'issued_token_type', 'token_type'])('I9 200 without %s → invalid_response, not cached', async (member) => {
      const { service: exchange } = await service();
      const body = { access_token: 'a', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 300 } as Record<string, unknown>;
      delete body[member];
      zone.faults.token = { kind: 'json', body };
      const subject = userToken();
      expect((await rejection(exchange.exchange(request(subject)))).kind).toBe('invalid_response');
      await rejection(exchange.exchange(request(subject)));
      expect(zone.counts.token).toBe(2);
    });

    it('I10 token_type N_A is accepted', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'json', body: { access_token: 'a', issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'N_A', expires_in: 60 } };
      expect(await exchange.exchange(request())).toMatchObject({ tokenType: 'N_A', issuedTokenType: 'urn:ietf:params:oauth:token-type:jwt' });
    });

    it('I11 expires_in -5 / "abc" → invalid_response; absent → success, not cached', async () => {
      const { service: exchange } = await service();
      const base = { access_token: 'a', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer' };
      for (const expires_in of [-5, 'abc']) {
        zone.faults.token = { kind: 'json', body: { ...base, expires_in } };
        expect((await rejection(exchange.exchange(request()))).kind).toBe('invalid_response');
      }
      zone.faults.token = { kind: 'json', body: base };
      const subject = userToken();
      expect((await exchange.exchange(request(subject))).expiresIn).toBeUndefined();
      zone.reset();
      zone.faults.token = { kind: 'json', body: base };
      await exchange.exchange(request(subject));
      expect(zone.counts.token).toBe(1);
    });

    it('I12 200 text/html → invalid_response', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 200, contentType: 'text/html', body: '<html>hi</html>' };
      expect((await rejection(exchange.exchange(request()))).kind).toBe('invalid_response');
    });

    it('I13 invalid_grant → code and status, AS#1, not cached', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 400, body: '{"error":"invalid_grant"}' };
      const subject = userToken();
      const error = await rejection(exchange.exchange(request(subject)));
      expect(error).toMatchObject({ code: 'invalid_grant', status: 400, kind: 'oauth', retryable: false });
      expect(zone.counts.token).toBe(1);
      delete zone.faults.token;
      await exchange.exchange(request(subject));
      expect(zone.counts.token).toBe(2);
    });

    it('I14 the real zone refuses an invalid subject token with invalid_request, AS#1', async () => {
      const { service: exchange } = await service();
      const error = await rejection(exchange.exchange(request(userToken().slice(0, -4) + 'AAAA')));
      expect(error).toMatchObject({ code: 'invalid_request', status: 400 });
      expect(zone.counts.token).toBe(1);
    });

    it('I15 invalid_target / invalid_scope from the real zone, AS#1 each', async () => {
      const { service: exchange } = await service();
      expect(await rejection(exchange.exchange(request(userToken(), { resource: 'https://unknown.example' })))).toMatchObject({ code: 'invalid_target' });
      expect(await rejection(exchange.exchange(request(userToken(), { scope: 'orders:delete' })))).toMatchObject({ code: 'invalid_scope' });
      expect(zone.counts.token).toBe(2);
    });

    it('I16 invalid_client with a Basic challenge: AS#1, the secret never in the error or logs', async () => {
      const { service: exchange, logger } = await service(new ClientSecret('agent-a', 'wrong-secret-value'));
      const subject = userToken();
      const error = await rejection(exchange.exchange(request(subject)));
      expect(error).toMatchObject({ code: 'invalid_client', status: 401 });
      expect(zone.counts.token).toBe(1);
      expectNoLeak([error.message, String(error.stack), JSON.stringify(error), ...logger.lines], ['wrong-secret-value', subject]);
    });

    it('I17 500 twice → AS#2 (one retry after a short jitter)', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 500, contentType: 'text/html', body: '<h1>oops</h1>' };
      const error = await rejection(exchange.exchange(request()));
      expect(error).toMatchObject({ status: 500, retryable: true });
      expect(zone.counts.token).toBe(2);
    });

    it('I18 503 Retry-After: 2 → waits, retries once; Retry-After: 120 → no retry', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 503, headers: { 'retry-after': '2' }, times: 1 };
      const started = Date.now();
      await exchange.exchange(request());
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
      expect(zone.counts.token).toBe(2);
      zone.reset();
      zone.faults.token = { kind: 'status', status: 503, headers: { 'retry-after': '120' } };
      const error = await rejection(exchange.exchange(request()));
      expect(error).toMatchObject({ kind: 'unavailable', status: 503, retryAfterSeconds: 120 });
      expect(zone.counts.token).toBe(1);
    });

    it('I19 a silent token endpoint is abandoned at the 5 s absolute deadline, no socket left open', async () => {
      const { service: exchange } = await service();
      await exchange.exchange(request()); // warm: metadata discovered, one connection made and closed
      zone.faults.token = { kind: 'hang' };
      const started = Date.now();
      const error = await rejection(exchange.exchange(request()));
      const elapsed = Date.now() - started;
      expect(error.kind).toBe('timeout');
      expect(elapsed).toBeGreaterThanOrEqual(4_900);
      expect(elapsed).toBeLessThan(6_500);
      await new Promise((r) => setTimeout(r, 200));
      expect(zone.openConnections).toBeLessThanOrEqual(1); // at most an idle keep-alive socket
    });

    it('I20 connection refused → exactly one retry, network error', async () => {
      const dead = await TestZone.start();
      const deadEndpoint = `${dead.origin}/token`;
      await dead.stop();
      let posts = 0;
      const { service: exchange } = await startExchangeContext({
        zoneUrl: zone.issuer, resource: AGENT_RESOURCE, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET },
        // The zone's own token endpoint, moved to a port where nothing listens.
        fetch: (url, init) => (url.endsWith('/token') ? (posts++, fetch(deadEndpoint, init)) : fetch(url, init)),
      }).then((started) => (contexts.push(started), started));
      const error = await rejection(exchange.exchange(request()));
      expect(error.kind).toBe('network');
      expect(posts).toBe(2);
    });

    it('I21 400 with an HTML body → status 400, no code, no retry', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 400, contentType: 'text/html', body: '<html>proxy</html>' };
      const error = await rejection(exchange.exchange(request()));
      expect(error).toMatchObject({ status: 400, code: undefined, kind: 'invalid_response' });
      expect(zone.counts.token).toBe(1);
    });

    it('I22 302 to another host is not followed', async () => {
      const { service: exchange } = await service();
      const attacker = await TestZone.start();
      zone.faults.token = { kind: 'redirect', location: `${attacker.origin}/token` };
      const error = await rejection(exchange.exchange(request()));
      expect(error).toMatchObject({ kind: 'network', status: 302 });
      expect(attacker.counts.token).toBe(0);
      await attacker.stop();
    });

    it('I23 a body over 1 MiB is aborted', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'oversized', bytes: 2 * 1024 * 1024 };
      expect((await rejection(exchange.exchange(request()))).kind).toBe('invalid_response');
    });

    it('I24 the zone error_description (HTML, CRLF) is never passed on', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 400, body: JSON.stringify({ error: 'invalid_grant', error_description: '<script>x</script>\r\nSet-Cookie: a=b' }) };
      const error = await rejection(exchange.exchange(request()));
      expect(error.message).not.toMatch(/script|Set-Cookie|\r|\n/);
    });
  });

  describe('single flight and isolation', () => {
    it('I25 50 concurrent identical exchanges → AS#1, all get the same token', async () => {
      const { service: exchange } = await service();
      const subject = userToken();
      const tokens = await Promise.all(Array.from({ length: 50 }, () => exchange.exchange(request(subject))));
      expect(zone.counts.token).toBe(1);
      expect(new Set(tokens.map((t) => t.accessToken)).size).toBe(1);
    });

    it('I26 the shared exchange fails (500 ×2) → AS#2 in total, all waiters get the error, nothing cached', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'status', status: 500, times: 2 };
      const subject = userToken();
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => exchange.exchange(request(subject))));
      expect(results.every((r) => r.status === 'rejected')).toBe(true);
      expect(zone.counts.token).toBe(2);
      await exchange.exchange(request(subject));
      expect(zone.counts.token).toBe(3);
    });

    it('I27 different subjects are not collapsed, and never see each other’s token', async () => {
      const { service: exchange } = await service();
      const [alice, bob] = await Promise.all([
        exchange.exchange(request(userToken({ sub: 'alice' }))),
        exchange.exchange(request(userToken({ sub: 'bob' }))),
      ]);
      expect(zone.counts.token).toBe(2);
      expect(zone.verifyOwnToken(alice.accessToken)?.sub).toBe('alice');
      expect(zone.verifyOwnToken(bob.accessToken)?.sub).toBe('bob');
    });

    it('I28 a caller that stops waiting does not cancel the shared exchange for the others', async () => {
      const { service: exchange } = await service();
      zone.faults.token = { kind: 'slow', delayMs: 300 };
      const subject = userToken();
      const abandoned = Promise.race([exchange.exchange(request(subject)), new Promise((r) => setTimeout(r, 10))]);
      const other = exchange.exchange(request(subject));
      await abandoned;
      delete zone.faults.token;
      expect((await other).accessToken).toBeTruthy();
    });

    it('I29 an expiring entry hit by 20 requests → one refresh (AS#1)', async () => {
      const { service: exchange, clock } = await service();
      const subject = userToken();
      await exchange.exchange(request(subject));
      zone.reset();
      clock.offsetMs += 271_000;
      await Promise.all(Array.from({ length: 20 }, () => exchange.exchange(request(subject))));
      expect(zone.counts.token).toBe(1);
    });

    it('I30 no subject token, issued token, secret or assertion in logs or errors on any path', async () => {
      const { service: exchange, logger } = await service(new ClientSecret('agent-a', SECRET));
      const subject = userToken();
      const token = await exchange.exchange(request(subject));
      zone.faults.token = { kind: 'status', status: 500 };
      const error = await rejection(exchange.exchange(request(userToken())));
      expectNoLeak([error.message, JSON.stringify(error), ...logger.lines], [subject, token.accessToken, SECRET]);
      expect(JSON.stringify(new ClientSecret('agent-a', SECRET))).not.toContain(SECRET);
    });
  });

  it('without clientCredentials, exchange() fails with a config error naming the zone and the option, AS#0', async () => {
    const started = await startExchangeContext({ zoneUrl: zone.issuer, resource: AGENT_RESOURCE });
    contexts.push(started);
    const error = await rejection(started.service.exchange(request()));
    expect(error.kind).toBe('config');
    expect(error.message).toBe(`no 'clientCredentials' are configured for the zone ${zone.issuer}: set KeycardModule's 'clientCredentials', or the zone's own in 'zones'`);
    expect(zone.counts.token).toBe(0);
  });
});
