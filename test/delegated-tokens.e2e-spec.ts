/**
 * The service's other ways to get tokens (catalogue §V): as itself (`client_credentials`, V2),
 * with workload identity from each kind of source (V4), and the exchange cache key for respelled
 * subject tokens (V5). Against the real TestZone, a loopback fake GCP metadata server and a real
 * Unix-socket server standing in for Fly's machine API.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ClientCredentialsService, TokenExchangeError, WorkloadIdentity, functionSource, type KeycardModuleOptions,
} from '../lib/index.js';
import { tokenFingerprint } from '../lib/exchange/token-fingerprint.js';
import { TestZone } from '../lib/testing/index.js';
import { startExchangeContext } from './support/exchange-context.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

const SERVICE = 'https://agent.example.com';
const X = 'https://repos.example.com';
const SECRET = 'service-secret-0123456789';

/** Assertions the zone accepts for client `agent-wi` (each source registers what it hands out). */
const accepted = new Set<string>();

async function rejection(promise: Promise<unknown>): Promise<TokenExchangeError> {
  try {
    await promise;
  } catch (error) {
    return error as TokenExchangeError;
  }
  throw new Error('expected a rejection');
}

function listen(server: Server, where: string | number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    if (typeof where === 'string') server.listen(where, () => resolve());
    else server.listen(where, '127.0.0.1', () => resolve());
  });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

describe('delegated tokens', () => {
  let zone: TestZone;
  let upstream: RunningApp;
  let dir: string;
  const contexts: Awaited<ReturnType<typeof startExchangeContext>>[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keycard-v4-'));
    zone = await TestZone.start({
      audience: SERVICE,
      resources: { [X]: ['orders:read', 'orders:write'] },
      clients: [
        { clientId: 'agent-a', clientSecret: SECRET },
        { clientId: 'agent-wi', acceptAssertion: (assertion) => accepted.has(assertion) },
      ],
    });
    upstream = await startApp('express', { zoneUrl: zone.issuer, resource: X });
  });
  afterEach(async () => {
    zone.reset();
    await Promise.all(contexts.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await upstream?.close();
    await zone?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(clientCredentials: KeycardModuleOptions['clientCredentials']) {
    const context = await startExchangeContext({ zoneUrl: zone.issuer, clientCredentials });
    contexts.push(context);
    return context;
  }
  const userToken = () => zone.issueToken({ sub: 'alice', client_id: 'user-app', scope: 'agent:use' });
  async function whoIs(token: string) {
    const res = await fetch(`${upstream.url}/me`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as { agent?: { clientId: string; subject: string; scopes: string[] } } };
  }

  describe('V2 the service acting as itself', () => {
    it('V2 client_credentials for a resource and scope → a token with the service as sub, accepted by the API; client_secret_basic, nothing in the body', async () => {
      const { context, logger } = await start({ clientId: 'agent-a', clientSecret: SECRET });
      const token = await context.get(ClientCredentialsService).token({ resource: X, scope: ['orders:read'] });
      expect(token).toMatchObject({ tokenType: 'Bearer', scope: 'orders:read', scopes: ['orders:read'], expiresIn: 300 });
      expect(zone.tokenRequests[0].form).toEqual({ grant_type: 'client_credentials', resource: X, scope: 'orders:read' });
      expect(zone.tokenRequests[0].headers.authorization).toMatch(/^Basic /);
      const seen = await whoIs(token.accessToken);
      expect(seen.status).toBe(200);
      expect(seen.body.agent).toMatchObject({ clientId: 'agent-a', subject: 'agent-a', scopes: ['orders:read'] });
      expect(logger.lines.some((l) => l.includes(SECRET) || l.includes(token.accessToken))).toBe(false);
    });

    it('V2 cached until expires_in − 30 s (AS#1 at +269 s, AS#2 at +271 s); 20 concurrent requests collapse into one', async () => {
      const { context, clock } = await start({ clientId: 'agent-a', clientSecret: SECRET });
      const service = context.get(ClientCredentialsService);
      const tokens = await Promise.all(Array.from({ length: 20 }, () => service.token({ resource: X, scope: 'orders:read' })));
      expect(new Set(tokens.map((t) => t.accessToken)).size).toBe(1);
      expect(zone.counts.token).toBe(1);
      clock.offsetMs = 269_000;
      await service.token({ resource: X, scope: 'orders:read' });
      expect(zone.counts.token).toBe(1);
      clock.offsetMs = 271_000;
      await service.token({ resource: X, scope: 'orders:read' });
      expect(zone.counts.token).toBe(2);
    });

    it('V2 another scope or resource is another entry; the exchange never shares its entries', async () => {
      const { context, service: exchange } = await start({ clientId: 'agent-a', clientSecret: SECRET });
      const service = context.get(ClientCredentialsService);
      await service.token({ resource: X, scope: 'orders:read' });
      await service.token({ resource: X, scope: 'orders:read orders:write' });
      await exchange.exchange({ subjectToken: userToken(), resource: X, scope: 'orders:read' });
      expect(zone.counts.token).toBe(3);
    });

    it.each([
      ['invalid_scope, a scope the zone does not offer (as I15)', () => undefined, 'orders:delete', { kind: 'oauth', code: 'invalid_scope', status: 400, retryable: false }, 1],
      ['500 twice (as I17)', (z: TestZone) => (z.faults.token = { kind: 'status', status: 500, body: '<html>oops</html>', contentType: 'text/html' }), 'orders:read', { kind: 'invalid_response', status: 500, retryable: true }, 2],
      ['503 with Retry-After: 120 (as I18)', (z: TestZone) => (z.faults.token = { kind: 'status', status: 503, headers: { 'retry-after': '120' } }), 'orders:read', { kind: 'unavailable', status: 503, retryAfterSeconds: 120 }, 1],
      ['a redirect (as I22)', (z: TestZone) => (z.faults.token = { kind: 'redirect', location: 'http://127.0.0.1:9/token' }), 'orders:read', { kind: 'network', status: 302 }, 1],
    ])('V2 typed errors exactly as the exchange: %s', async (_name, fault, scope, expected, posts) => {
      const { context, logger } = await start({ clientId: 'agent-a', clientSecret: SECRET });
      fault(zone);
      const error = await rejection(context.get(ClientCredentialsService).token({ resource: X, scope }));
      expect(error).toBeInstanceOf(TokenExchangeError);
      expect(error).toMatchObject(expected);
      expect(zone.counts.token).toBe(posts);
      expect(`${error.message} ${JSON.stringify(error)}`.includes(SECRET)).toBe(false);
      expect(logger.lines.some((l) => l.includes(SECRET))).toBe(false);
      // Not cached: the next call asks again.
      zone.reset();
      await rejection(context.get(ClientCredentialsService).token({ resource: X, scope })).catch(() => undefined);
      expect(zone.counts.token).toBeGreaterThan(0);
    });

    it('V2 a resource the zone refuses → TokenExchangeError invalid_target; no credentials → config error, AS#0', async () => {
      const { context } = await start({ clientId: 'agent-a', clientSecret: SECRET });
      zone.refuseResource(X, 'invalid_target');
      expect(await rejection(context.get(ClientCredentialsService).token({ resource: X }))).toMatchObject({ kind: 'oauth', code: 'invalid_target' });
      zone.reset();
      const bare = await start(undefined);
      expect(await rejection(bare.context.get(ClientCredentialsService).token({ resource: X }))).toMatchObject({ kind: 'config' });
      expect(zone.counts.token).toBe(0);
    });
  });

  describe('V4 workload identity sources', () => {
    /** Two exchanges with different subject tokens (two cache keys): the assertions the zone saw. */
    async function twoExchanges(identity: WorkloadIdentity, between: () => void = () => undefined) {
      const { service, logger } = await start(identity);
      const first = await service.exchange({ subjectToken: userToken(), resource: X, scope: 'orders:read' });
      between();
      const second = await service.exchange({ subjectToken: userToken(), resource: X, scope: 'orders:read' });
      expect((await whoIs(second.accessToken)).body.agent).toMatchObject({ clientId: 'agent-wi', subject: 'alice' });
      const assertions = zone.tokenRequests.map((r) => r.form.client_assertion);
      for (const request of zone.tokenRequests) {
        expect(request.form.client_assertion_type).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
        expect(request.headers.authorization).toBeUndefined();
      }
      for (const assertion of assertions) expect(logger.lines.some((l) => l.includes(assertion))).toBe(false);
      expect(first.accessToken).not.toBe(second.accessToken);
      return { assertions, logger };
    }

    it('V4 Kubernetes projected token file: read fresh per exchange (the kubelet swaps it)', async () => {
      const file = join(dir, 'k8s-token');
      accepted.add('k8s-v1').add('k8s-v2');
      writeFileSync(file, 'k8s-v1\n');
      const { assertions } = await twoExchanges(WorkloadIdentity.kubernetes({ tokenFile: file, clientId: 'agent-wi' }), () => {
        writeFileSync(`${file}.new`, 'k8s-v2');
        renameSync(`${file}.new`, file);
      });
      expect(assertions).toEqual(['k8s-v1', 'k8s-v2']);
    });

    it('V4 AKS: the file named by AZURE_FEDERATED_TOKEN_FILE; EKS keeps its variables', async () => {
      const file = join(dir, 'aks-token');
      accepted.add('aks-v1').add('aks-v2');
      writeFileSync(file, 'aks-v1');
      const aks = WorkloadIdentity.aks({ clientId: 'agent-wi', env: { AZURE_FEDERATED_TOKEN_FILE: file } });
      expect(aks.tokenFile).toBe(file);
      const { assertions } = await twoExchanges(aks, () => writeFileSync(file, 'aks-v2'));
      expect(assertions).toEqual(['aks-v1', 'aks-v2']);
      expect(() => WorkloadIdentity.aks({ env: {} })).toThrow('AZURE_FEDERATED_TOKEN_FILE');
      expect(WorkloadIdentity.eks({ env: { AWS_WEB_IDENTITY_TOKEN_FILE: '/c' } }).tokenFile).toBe('/c');
    });

    describe('GCP metadata server', () => {
      let metadata: Server;
      let baseUrl: string;
      let requests: { path: string; audience: string | null; flavor: string | undefined }[] = [];
      let impostor = false;

      beforeAll(async () => {
        metadata = createServer((req, res) => {
          const url = new URL(req.url ?? '/', 'http://metadata');
          requests.push({ path: url.pathname, audience: url.searchParams.get('audience'), flavor: req.headers['metadata-flavor'] as string | undefined });
          if (url.pathname !== '/computeMetadata/v1/instance/service-accounts/default/identity' || req.headers['metadata-flavor'] !== 'Google') {
            res.writeHead(403, { 'metadata-flavor': 'Google' }).end('Missing Metadata-Flavor:Google header.');
            return;
          }
          const token = `gcp-${randomUUID()}`;
          accepted.add(token);
          res.writeHead(200, { 'content-type': 'text/html', ...(impostor ? {} : { 'metadata-flavor': 'Google' }) }).end(token);
        });
        await listen(metadata, 0);
        baseUrl = `http://127.0.0.1:${(metadata.address() as { port: number }).port}`;
      });
      afterEach(() => {
        requests = [];
        impostor = false;
      });
      afterAll(() => new Promise<void>((resolve) => metadata.close(() => resolve())));

      it('V4 GCP metadata server: identity?audience=… with Metadata-Flavor: Google, a fresh token per exchange, never logged', async () => {
        const { assertions } = await twoExchanges(WorkloadIdentity.gcp({ audience: zone.issuer, baseUrl, clientId: 'agent-wi' }));
        expect(requests).toEqual([
          { path: '/computeMetadata/v1/instance/service-accounts/default/identity', audience: zone.issuer, flavor: 'Google' },
          { path: '/computeMetadata/v1/instance/service-accounts/default/identity', audience: zone.issuer, flavor: 'Google' },
        ]);
        expect(assertions).toHaveLength(2);
        expect(assertions[0]).not.toBe(assertions[1]);
        expect(assertions.every((a) => a.startsWith('gcp-'))).toBe(true);
      });

      it('V4 GCP: an answer without Metadata-Flavor: Google is refused (config error, AS#0); an unreachable server → unavailable', async () => {
        impostor = true;
        const { service } = await start(WorkloadIdentity.gcp({ audience: zone.issuer, baseUrl, clientId: 'agent-wi' }));
        const error = await rejection(service.exchange({ subjectToken: userToken(), resource: X }));
        expect(error).toMatchObject({ kind: 'config' });
        expect(error.message).not.toMatch(/gcp-/);
        const down = await start(WorkloadIdentity.gcp({ audience: zone.issuer, baseUrl: 'http://127.0.0.1:9', clientId: 'agent-wi' }));
        expect(await rejection(down.service.exchange({ subjectToken: userToken(), resource: X }))).toMatchObject({ kind: 'unavailable' });
        expect(zone.counts.token).toBe(0);
      });
    });

    describe('Fly machine API socket', () => {
      let socketDir: string;
      let socketPath: string;
      let fly: Server;
      let bodies: unknown[] = [];

      beforeAll(async () => {
        socketDir = mkdtempSync(join(tmpdir(), 'keycard-fly-'));
        socketPath = join(socketDir, 'api.sock');
        fly = createServer((req, res) => {
          void readBody(req).then((body) => {
            bodies.push({ method: req.method, path: req.url, body: JSON.parse(body) as unknown });
            if (req.method !== 'POST' || req.url !== '/v1/tokens/oidc') return res.writeHead(404).end();
            const token = `fly-${randomUUID()}`;
            accepted.add(token);
            res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
          });
        });
        await listen(fly, socketPath);
      });
      afterEach(() => {
        bodies = [];
      });
      afterAll(async () => {
        await new Promise<void>((resolve) => fly.close(() => resolve()));
        rmSync(socketDir, { recursive: true, force: true });
      });

      it('V4 Fly Unix socket: POST /v1/tokens/oidc {aud} on the socket, a fresh token per exchange, never logged', async () => {
        const { assertions } = await twoExchanges(WorkloadIdentity.fly({ audience: zone.issuer, socketPath, clientId: 'agent-wi' }));
        expect(bodies).toEqual([
          { method: 'POST', path: '/v1/tokens/oidc', body: { aud: zone.issuer } },
          { method: 'POST', path: '/v1/tokens/oidc', body: { aud: zone.issuer } },
        ]);
        expect(assertions[0]).not.toBe(assertions[1]);
        expect(assertions.every((a) => a.startsWith('fly-'))).toBe(true);
      });

      it('V4 Fly: no socket at the path → unavailable, AS#0', async () => {
        const { service } = await start(WorkloadIdentity.fly({ audience: zone.issuer, socketPath: join(socketDir, 'missing.sock'), clientId: 'agent-wi' }));
        expect(await rejection(service.exchange({ subjectToken: userToken(), resource: X }))).toMatchObject({ kind: 'unavailable' });
        expect(zone.counts.token).toBe(0);
      });
    });

    it('V4 an app-supplied async function: called per exchange; what it throws becomes a config error without its message', async () => {
      let calls = 0;
      const source = async () => {
        calls += 1;
        const token = `fn-${calls}-${randomUUID()}`;
        accepted.add(token);
        return token;
      };
      const { assertions } = await twoExchanges(new WorkloadIdentity({ source, clientId: 'agent-wi' }));
      expect(calls).toBe(2);
      expect(assertions.every((a) => a.startsWith('fn-'))).toBe(true);

      const leaky = 'fn-secret-assertion-in-a-message';
      const { service } = await start(new WorkloadIdentity({ source: functionSource(async () => Promise.reject(new Error(leaky))), clientId: 'agent-wi' }));
      const error = await rejection(service.exchange({ subjectToken: userToken(), resource: X }));
      expect(error).toMatchObject({ kind: 'config' });
      expect(error.message.includes(leaky)).toBe(false);
      expect(zone.counts.token).toBe(2);
    });

    it('V4 a refused assertion (invalid_client) is in no error or log line', async () => {
      const token = `never-accepted-${randomUUID()}`;
      const { service, logger } = await start(new WorkloadIdentity({ source: async () => token, clientId: 'agent-wi' }));
      const error = await rejection(service.exchange({ subjectToken: userToken(), resource: X }));
      expect(error).toMatchObject({ kind: 'oauth', code: 'invalid_client', status: 401 });
      expect(`${error.message} ${String(error.stack)} ${JSON.stringify(error)}`.includes(token)).toBe(false);
      expect(logger.lines.some((l) => l.includes(token))).toBe(false);
      expect(zone.counts.token).toBe(1); // the same assertion again: no retry (I7)
    });
  });

  describe('V5 exchange cache key', () => {
    /** The 16 spellings of an RS256 (2048-bit) or ES256 signature: its last character carries 4 unused bits. */
    function respellings(token: string): string[] {
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const value = alphabet.indexOf(token.at(-1)!);
      return Array.from({ length: 16 }, (_, bits) => token.slice(0, -1) + alphabet[(value & ~0xf) | bits]);
    }

    it('V5 the 16 spellings of one subject token share one cache entry (AS#1); another token is another entry', async () => {
      const { service } = await start({ clientId: 'agent-a', clientSecret: SECRET });
      const token = userToken();
      const spellings = respellings(token);
      expect(new Set(spellings).size).toBe(16);
      expect(spellings).toContain(token);
      expect(new Set(spellings.map(tokenFingerprint)).size).toBe(1);
      const first = await service.exchange({ subjectToken: token, resource: X, scope: 'orders:read' });
      for (const spelling of spellings) {
        expect((await service.exchange({ subjectToken: spelling, resource: X, scope: 'orders:read' })).accessToken).toBe(first.accessToken);
      }
      expect(zone.counts.token).toBe(1);
      await service.exchange({ subjectToken: userToken(), resource: X, scope: 'orders:read' });
      expect(zone.counts.token).toBe(2);
    });

    it('V5 a changed signing input or signature byte is a different key; opaque tokens are keyed as written', () => {
      const token = userToken();
      const [header, payload, signature] = token.split('.');
      const otherSignature = `${header}.${payload}.${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
      const otherPayload = `${header}.${payload.slice(0, -1)}${payload.at(-1) === 'A' ? 'B' : 'A'}.${signature}`;
      expect(tokenFingerprint(otherSignature)).not.toBe(tokenFingerprint(token));
      expect(tokenFingerprint(otherPayload)).not.toBe(tokenFingerprint(token));
      expect(tokenFingerprint('opaque-token-a')).not.toBe(tokenFingerprint('opaque-token-b'));
      // ES256: a 64-byte signature also leaves 4 unused bits in its last character.
      const ec = zone.issueToken({ sub: 'alice' }, { kid: 'ec1' });
      expect(new Set(respellings(ec).map(tokenFingerprint)).size).toBe(1);
      expect(tokenFingerprint(ec)).not.toBe(tokenFingerprint(token));
      expect(tokenFingerprint(token)).not.toContain(signature.slice(0, 16));
    });
  });
});
