/**
 * Issue 25, item 1 — the local zone for any app (`nestjs-keycard zone` / `token`): the zone of a
 * config file on a fixed loopback port, tokens for curl, the PKCE sign-in, and fresh key ids on
 * each start so that a running app admits the tokens of a restarted zone (unknown-kid refetch,
 * catalogue E21's cooldown). A real Nest app against the real zone; the commands' own functions.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintToken } from '../lib/cli/token-command.js';
import { loadZoneConfig, parseZoneConfig, type LocalZoneConfig } from '../lib/cli/zone-config.js';
import { environmentOf, printBanner, startLocalZone } from '../lib/cli/zone-command.js';
import { authenticate } from '../lib/pkce/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { freePort } from './support/free-port.js';
import { followAuthorization, send } from './support/http.js';
import { startApp, type RunningApp } from './support/keycard-app.js';

const bearer = (token: string): [string, string][] => [['Authorization', `Bearer ${token}`]];

describe('first hour: the local zone config file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'keycard-zone-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('no file: the defaults (port 4455, a resource at localhost:3000, a PKCE client, an agent with a secret, one user)', () => {
    const config = loadZoneConfig(undefined);
    expect(config.port).toBe(4455);
    expect(Object.keys(config.resources)).toEqual(['http://localhost:3000']);
    expect(config.agents.map((a) => a.id)).toEqual(['dev-cli', 'agent-a']);
    expect(config.users[0].sub).toBe('alice@example.com');
  });

  it('a file: its members over the defaults', () => {
    const file = join(dir, 'zone.json');
    writeFileSync(file, JSON.stringify({ port: 4500, resources: { 'http://localhost:3001': ['orders:read'] } }));
    expect(loadZoneConfig(file)).toMatchObject({ port: 4500, resources: { 'http://localhost:3001': ['orders:read'] } });
  });

  it.each([
    [{ prot: 4455 }, "'prot' is not a member (port, resources, agents, users)"],
    [{ port: 70_000 }, "'port' must be a port number 1–65535"],
    [{ resources: { 'not a url': [] } }, "'resources.not a url' must be an absolute URL"],
    [{ resources: { 'http://localhost:3000': ['a b'] } }, "'resources.http://localhost:3000' must be a list of scopes"],
    [{ agents: [{ secret: 'x' }] }, "'agents[0]' must be { id, secret?, redirectUris? }"],
    [{ users: [] }, "'users' must list at least one"],
  ])('%j is refused, naming the member', (raw, message) => {
    expect(() => parseZoneConfig(raw, 'keycard-zone.json')).toThrow(`keycard-zone.json: ${message}`);
  });

  it('a file that cannot be read or parsed is named', () => {
    expect(() => loadZoneConfig(join(dir, 'missing.json'))).toThrow(/cannot read .*missing\.json: ENOENT/);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{');
    expect(() => loadZoneConfig(broken)).toThrow('broken.json is not valid JSON');
  });
});

describe('first hour: the local zone', () => {
  let config: LocalZoneConfig;
  let zone: TestZone;
  let api: RunningApp;
  /** The app's resource: derived from its loopback origin, as in local development without 'resource'. */
  let resource: string;
  let prm: string;

  beforeAll(async () => {
    config = parseZoneConfig({
      port: await freePort(),
      resources: { 'http://localhost:3000': ['orders:read', 'orders:write'] },
      agents: [{ id: 'agent-a', secret: 'agent-a-secret' }, { id: 'dev-cli', redirectUris: [`http://127.0.0.1:${await freePort()}/callback`] }],
      users: [{ sub: 'alice@example.com' }],
    });
    zone = await startLocalZone(config);
    api = await startApp('express', { zoneUrl: zone.issuer });
    resource = api.url;
    prm = `${resource}/.well-known/oauth-protected-resource`;
    zone.registerResource(resource, ['orders:read', 'orders:write']);
  });
  afterAll(async () => {
    await api.close();
    await zone.stop();
  });

  it('listens on the fixed port, publishes the config\'s scopes, and prints the environment the app needs', () => {
    expect(zone.issuer).toBe(`http://127.0.0.1:${config.port}`);
    expect(zone.metadata().scopes_supported).toEqual(['orders:read', 'orders:write']);
    expect(environmentOf(zone, config)).toEqual([`KEYCARD_ZONE_URL=${zone.issuer}`, 'KEYCARD_RESOURCE=http://localhost:3000']);
    const lines: string[] = [];
    printBanner(zone, config, (line) => lines.push(line));
    expect(lines).toContain(`  KEYCARD_ZONE_URL=${zone.issuer}`);
    expect(lines).toContain(`  TOKEN=$(npx nestjs-keycard token --agent agent-a --user alice@example.com --scope orders:read --resource http://localhost:3000)`);
  });

  it('mints tokens for curl: the app admits them with their scopes, and refuses a missing scope (403)', async () => {
    const token = await mintToken({ zoneUrl: zone.issuer, agent: 'agent-a', user: 'alice@example.com', scopes: ['orders:read'], resource });
    const answer = await send(api.url, 'GET', '/orders', bearer(token));
    expectOutcome(answer, '200', undefined);
    expect((answer.json as { agent: Record<string, unknown> }).agent).toMatchObject({ clientId: 'agent-a', subject: 'alice@example.com', scopes: ['orders:read'] });
    expectOutcome(await send(api.url, 'POST', '/orders', bearer(token)), '403:orders:read orders:write', prm, [token], api.logger.lines);
  });

  it('/dev/token refuses a malformed request (400), and is not served by a zone without the option (404)', async () => {
    const bad = await fetch(`${zone.issuer}/dev/token`, { method: 'POST', body: JSON.stringify({ scopes: 'orders:read' }) });
    expect(bad.status).toBe(400);
    const plain = await TestZone.start();
    try {
      await expect(mintToken({ zoneUrl: plain.issuer })).rejects.toThrow('is not a local zone started by `nestjs-keycard zone`');
    } finally {
      await plain.stop();
    }
    await expect(mintToken({ zoneUrl: `http://127.0.0.1:${await freePort()}` })).rejects.toThrow('no local zone answers at');
  });

  it('token --expires-in outside 1…86400 s is refused by the command itself, naming the range (issue 25, F5)', async () => {
    for (const expiresIn of [0, 999_999, 1.5, Number.NaN]) {
      await expect(mintToken({ zoneUrl: zone.issuer, expiresIn })).rejects.toThrow('--expires-in must be a whole number of seconds from 1 to 86400 (a day)');
    }
    const token = await mintToken({ zoneUrl: zone.issuer, resource: 'http://localhost:3000', expiresIn: 86_400 });
    const { exp, iat } = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { exp: number; iat: number };
    expect(exp - iat).toBeGreaterThanOrEqual(86_399);
  });

  it('/dev/token refuses unknown fields and unknown resources with a 400 that names them, and the command shows it (issue 25, F6)', async () => {
    const ask = (body: unknown) => fetch(`${zone.issuer}/dev/token`, { method: 'POST', body: JSON.stringify(body) });
    const bogus = await ask({ user: 'alice@example.com', bogus: 1, resource: 'http://localhost:3000' });
    expect(bogus.status).toBe(400);
    expect(await bogus.json()).toEqual({
      error: 'invalid_request',
      error_description: "unknown field(s) 'bogus', 'resource' (known: agent, user, scopes, audience, expiresIn)",
    });
    const elsewhere = await ask({ audience: 'https://elsewhere.example' });
    expect(elsewhere.status).toBe(400);
    const refused = (await elsewhere.json()) as { error: string; error_description: string };
    expect(refused.error).toBe('invalid_target');
    expect(refused.error_description).toContain("'https://elsewhere.example' is not a resource of this zone (known: http://localhost:3000");
    await expect(mintToken({ zoneUrl: zone.issuer, resource: 'https://elsewhere.example' }))
      .rejects.toThrow("the local zone refused the request: HTTP 400 invalid_target: 'https://elsewhere.example' is not a resource of this zone");
  });

  it('/dev/token without an audience issues a token for the first resource of the config, as the command does (the newcomer re-trial)', async () => {
    const answer = await fetch(`${zone.issuer}/dev/token`, { method: 'POST', body: JSON.stringify({ agent: 'agent-a', user: 'alice@example.com', scopes: ['orders:read'] }) });
    expect(answer.status).toBe(200);
    const { access_token: token } = (await answer.json()) as { access_token: string };
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { aud?: unknown };
    expect(claims.aud).toBe('http://localhost:3000'); // the config's first resource (KEYCARD_RESOURCE of `env`)
  });

  it('serves the sign-in the PKCE helper uses (authorization code + PKCE, the first user signed in)', async () => {
    const redirectUri = config.agents[1].redirectUris![0];
    const tokens = await authenticate({
      clientId: 'dev-cli', resourceUrl: `${api.url}/orders`, scopes: ['orders:read'], redirectUri, timeoutMs: 5_000,
      openBrowser: followAuthorization,
    });
    // The API's resource is its configured identifier, so the PKCE helper asks for it.
    expect(tokens).toMatchObject({ resource, issuer: zone.issuer, scope: 'orders:read' });
    const answer = await send(api.url, 'GET', '/orders', bearer(tokens.accessToken));
    expect((answer.json as { agent: Record<string, unknown> }).agent).toMatchObject({ clientId: 'dev-cli', subject: 'alice@example.com' });
  });

  it('a restarted zone (new keys, fresh kids) under a running app: its new tokens are admitted through the unknown-kid refetch (once the cooldown of E21 has passed)', async () => {
    const before = await mintToken({ zoneUrl: zone.issuer, scopes: ['orders:read'], resource });
    expectOutcome(await send(api.url, 'GET', '/orders', bearer(before)), '200', undefined);
    const oldKid = zone.signingKeys[0].kid;
    await zone.stop();
    zone = await startLocalZone(config);
    zone.registerResource(resource, ['orders:read', 'orders:write']);
    expect(zone.signingKeys[0].kid).not.toBe(oldKid);
    expect(zone.signingKeys[0].kid).toMatch(/^rs1-[0-9a-f]{8}$/);
    const after = await mintToken({ zoneUrl: zone.issuer, scopes: ['orders:read'], resource });
    api.clock.offsetMs += 31_000; // past the unknown-kid cooldown (30 s) since the app last fetched keys
    expectOutcome(await send(api.url, 'GET', '/orders', bearer(after)), '200', undefined);
    // The old zone's keys are gone from the new key set: its tokens no longer verify.
    expectOutcome(await send(api.url, 'GET', '/orders', bearer(before)), '401 IT scope=orders:read', prm, [before, after], api.logger.lines);
  });
});
