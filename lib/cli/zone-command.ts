import { TestZone } from '../testing/test-zone.js';
import { clientsOf, type LocalZoneConfig } from './zone-config.js';

/** Where the commands write: the terminal in the CLI, a buffer in tests. */
export type Print = (line: string) => void;

/**
 * Starts the local zone of `config` on `127.0.0.1:<port>`: keys with fresh ids (a running app picks
 * them up through its unknown-`kid` refetch), the sign-in page (authorization code + PKCE, the
 * first user signed in without a password), `POST /dev/token` for the `token` command, and the
 * config's scopes as `scopes_supported`.
 * @throws the listen error, e.g. `EADDRINUSE` when a zone already runs on the port.
 */
export async function startLocalZone(config: LocalZoneConfig): Promise<TestZone> {
  const zone = await TestZone.start({
    port: config.port,
    host: '127.0.0.1',
    resources: config.resources,
    clients: clientsOf(config),
    devUser: config.users[0],
    freshKeyIds: true,
    devTokenEndpoint: true,
  });
  // Published, so an app's boot check warns about a declared scope the config lacks (a typo).
  const scopes = [...new Set(Object.values(config.resources).flat())];
  if (scopes.length > 0) zone.metadataOverrides = { scopes_supported: scopes };
  return zone;
}

/** The environment an app needs to trust the zone, one `NAME=value` line each. */
export function environmentOf(zone: { issuer: string }, config: LocalZoneConfig): string[] {
  const resources = Object.keys(config.resources);
  return [`KEYCARD_ZONE_URL=${zone.issuer}`, ...(resources.length > 0 ? [`KEYCARD_RESOURCE=${resources[0]}`] : [])];
}

/** What the `zone` command prints once the zone listens. */
export function printBanner(zone: TestZone, config: LocalZoneConfig, print: Print): void {
  print(`Local Keycard zone on ${zone.issuer} (for local development only: tokens for anyone, no passwords)`);
  print('');
  print('Environment for your app (KeycardModule.forRoot({ zoneUrl: process.env.KEYCARD_ZONE_URL, resource: process.env.KEYCARD_RESOURCE })):');
  for (const line of environmentOf(zone, config)) print(`  ${line}`);
  print('');
  print('Resources and their scopes:');
  for (const [resource, scopes] of Object.entries(config.resources)) print(`  ${resource}  ${scopes.length > 0 ? scopes.join(' ') : '(no scopes listed)'}`);
  print('Agents:');
  for (const agent of config.agents) {
    print(agent.secret === undefined
      ? `  ${agent.id}  public client, signs users in with PKCE at ${(agent.redirectUris ?? []).join(', ') || '(no redirect URIs)'}`
      : `  ${agent.id}  secret ${agent.secret} (client credentials, token exchange)`);
  }
  print(`Signed in without a password: ${config.users[0].sub}`);
  print('');
  const resource = Object.keys(config.resources)[0] ?? 'http://localhost:3000';
  const scope = config.resources[resource]?.[0];
  const agent = config.agents.find((a) => a.secret !== undefined)?.id ?? config.agents[0]?.id ?? 'agent-a';
  print('A token for curl (another terminal):');
  print(`  TOKEN=$(npx nestjs-keycard token --agent ${agent} --user ${config.users[0].sub}${scope ? ` --scope ${scope}` : ''} --resource ${resource})`);
  print(`  curl -H "Authorization: Bearer $TOKEN" ${resource}/…`);
  print('');
  print('Ctrl-C stops the zone. Restarting it makes new keys; a running app picks them up by itself.');
}
