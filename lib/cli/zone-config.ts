import { readFileSync } from 'node:fs';
import type { TestZoneClient } from '../testing/token-endpoint.js';

/** The fixed loopback port of the local zone, so the app's `KEYCARD_ZONE_URL` survives restarts. */
export const DEFAULT_ZONE_PORT = 4455;
/** The config file the commands read when `--config` is not given (missing: the defaults). */
export const DEFAULT_CONFIG_FILE = 'keycard-zone.json';

/**
 * An agent of the local zone: a confidential client (with `secret`: client credentials, token
 * exchange), or a public one that signs users in with PKCE at its `redirectUris`.
 */
export interface LocalAgent {
  id: string;
  secret?: string;
  redirectUris?: string[];
}

/** A user of the local zone. The first one is signed in, without a password, by the sign-in page. */
export interface LocalUser {
  sub: string;
  [claim: string]: unknown;
}

/**
 * `keycard-zone.json`: what the local zone knows. Every member is optional.
 * @example
 * ```json
 * {
 *   "port": 4455,
 *   "resources": { "http://localhost:3000": ["orders:read", "orders:write"] },
 *   "agents": [{ "id": "agent-a", "secret": "agent-a-secret" }, { "id": "my-cli", "redirectUris": ["http://localhost:8765/callback"] }],
 *   "users": [{ "sub": "alice@example.com", "name": "Alice" }]
 * }
 * ```
 */
export interface LocalZoneConfig {
  /** @default 4455 */
  port: number;
  /** Resource identifiers (the app's `resource`) with the scopes each offers. @default `{ "http://localhost:3000": [] }` */
  resources: Record<string, string[]>;
  /** @default a public `dev-cli` (PKCE at localhost:8765 and 127.0.0.1:8765) and `agent-a` with secret `agent-a-local-secret` */
  agents: LocalAgent[];
  /** @default `[{ "sub": "alice@example.com" }]` */
  users: LocalUser[];
}

const DEFAULTS: LocalZoneConfig = {
  port: DEFAULT_ZONE_PORT,
  resources: { 'http://localhost:3000': [] },
  agents: [
    { id: 'dev-cli', redirectUris: ['http://localhost:8765/callback', 'http://127.0.0.1:8765/callback'] },
    { id: 'agent-a', secret: 'agent-a-local-secret' },
  ],
  users: [{ sub: 'alice@example.com', name: 'Alice (local user)' }],
};

/** Thrown for a config file that cannot be read or has a wrong member; the message names the member. */
export class ZoneConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZoneConfigError';
  }
}

/**
 * The config at `path`, with defaults for what it leaves out; the defaults alone when `path` is the
 * default file and it does not exist.
 * @throws ZoneConfigError naming the file and the member.
 */
export function loadZoneConfig(path: string | undefined): LocalZoneConfig {
  const file = path ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (path === undefined && (error as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(DEFAULTS);
    throw new ZoneConfigError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ZoneConfigError(`${file} is not valid JSON`);
  }
  return parseZoneConfig(raw, file);
}

/** Checks a parsed config and applies the defaults. @throws ZoneConfigError */
export function parseZoneConfig(raw: unknown, file = 'the config'): LocalZoneConfig {
  const fail = (member: string, problem: string): never => {
    throw new ZoneConfigError(`${file}: '${member}' ${problem}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('(root)', 'must be a JSON object');
  const config = raw as Record<string, unknown>;
  for (const key of Object.keys(config)) {
    if (!['port', 'resources', 'agents', 'users', '$schema'].includes(key)) fail(key, 'is not a member (port, resources, agents, users)');
  }
  const port = config.port ?? DEFAULTS.port;
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65_535) fail('port', 'must be a port number 1–65535');
  const resources = (config.resources ?? DEFAULTS.resources) as Record<string, unknown>;
  if (typeof resources !== 'object' || resources === null || Array.isArray(resources)) fail('resources', 'must map resource URLs to scope lists');
  for (const [resource, scopes] of Object.entries(resources)) {
    if (!URL.canParse(resource)) fail(`resources.${resource}`, 'must be an absolute URL (the app\'s resource identifier)');
    if (!Array.isArray(scopes) || !scopes.every((scope) => typeof scope === 'string' && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(scope))) {
      fail(`resources.${resource}`, 'must be a list of scopes');
    }
  }
  const agents = (config.agents ?? DEFAULTS.agents) as unknown[];
  if (!Array.isArray(agents)) fail('agents', 'must be a list of { id, secret?, redirectUris? }');
  agents.forEach((agent, index) => checkAgent(agent, `agents[${index}]`, fail));
  const users = (config.users ?? DEFAULTS.users) as unknown[];
  if (!Array.isArray(users) || users.length === 0) fail('users', 'must list at least one { sub, … }');
  users.forEach((user, index) => {
    if (typeof user !== 'object' || user === null || typeof (user as LocalUser).sub !== 'string') fail(`users[${index}]`, 'must be { sub, … }');
  });
  return structuredClone({ port: port as number, resources: resources as Record<string, string[]>, agents: agents as LocalAgent[], users: users as LocalUser[] });
}

function checkAgent(raw: unknown, member: string, fail: (member: string, problem: string) => never): void {
  const agent = raw as Partial<LocalAgent> | null;
  if (typeof agent !== 'object' || agent === null || typeof agent.id !== 'string' || agent.id === '') fail(member, 'must be { id, secret?, redirectUris? }');
  if (agent.secret !== undefined && (typeof agent.secret !== 'string' || agent.secret === '')) fail(`${member}.secret`, 'must be a non-empty string');
  const uris = agent.redirectUris;
  if (uris !== undefined && !(Array.isArray(uris) && uris.every((uri) => typeof uri === 'string' && URL.canParse(uri)))) {
    fail(`${member}.redirectUris`, 'must be a list of absolute URLs');
  }
}

/** The zone's clients: agents with a secret are confidential, the others public (PKCE). */
export function clientsOf(config: LocalZoneConfig): TestZoneClient[] {
  return config.agents.map((agent) => ({
    clientId: agent.id,
    ...(agent.secret === undefined ? { public: true } : { clientSecret: agent.secret }),
    redirectUris: agent.redirectUris,
  }));
}
