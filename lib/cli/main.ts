#!/usr/bin/env node
/**
 * `nestjs-keycard`: a local Keycard zone for developing any app without a Keycard account.
 *   nestjs-keycard zone  [--config keycard-zone.json] [--port 4455]
 *   nestjs-keycard token [--agent a] [--user u] [--scope s]… [--resource R] [--expires-in s] [--zone URL]
 *   nestjs-keycard env   [--config keycard-zone.json] [--port 4455]
 */
import { parseArgs } from 'node:util';
import { mintToken } from './token-command.js';
import { loadZoneConfig, type LocalZoneConfig } from './zone-config.js';
import { environmentOf, printBanner, startLocalZone } from './zone-command.js';

const USAGE = `Usage:
  nestjs-keycard zone  [--config keycard-zone.json] [--port 4455]   start the local zone (Ctrl-C stops it)
  nestjs-keycard token [--agent agent-a] [--user alice@example.com] [--scope orders:read]… [--resource http://localhost:3000]
                       [--expires-in 3600] [--zone http://127.0.0.1:4455]   print an access token from the running zone
  nestjs-keycard env   [--config keycard-zone.json] [--port 4455]   print the environment your app needs`;

/** Runs one command; resolves with the process exit code (the `zone` command only when stopped). */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'zone') return await zone(rest);
    if (command === 'token') return await token(rest);
    if (command === 'env') return env(rest);
  } catch (error) {
    console.error(`nestjs-keycard ${command}: ${(error as Error).message}`);
    return 1;
  }
  if (command === undefined || command === '--help' || command === 'help') {
    console.log(USAGE);
    return 0;
  }
  console.error(`Unknown command ${JSON.stringify(command)}\n${USAGE}`);
  return 2;
}

function configFrom(args: string[]): LocalZoneConfig {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, port: { type: 'string' } }, strict: true });
  const config = loadZoneConfig(values.config);
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`--port ${values.port} is not a port number`);
    config.port = port;
  }
  return config;
}

async function zone(args: string[]): Promise<number> {
  const config = configFrom(args);
  const started = await startLocalZone(config).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EADDRINUSE') throw new Error(`port ${config.port} is in use (a zone already running? another --port?)`);
    throw error;
  });
  printBanner(started, config, (line) => console.log(line));
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await started.stop();
  return 0;
}

async function token(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      agent: { type: 'string' },
      user: { type: 'string' },
      scope: { type: 'string', multiple: true },
      resource: { type: 'string' },
      'expires-in': { type: 'string' },
      zone: { type: 'string' },
      config: { type: 'string' },
    },
    strict: true,
  });
  const config = loadZoneConfig(values.config);
  const expiresIn = values['expires-in'] === undefined ? undefined : Number(values['expires-in']);
  const access = await mintToken({
    zoneUrl: values.zone ?? process.env.KEYCARD_ZONE_URL ?? `http://127.0.0.1:${config.port}`,
    agent: values.agent,
    user: values.user,
    // `--scope "a b"` and `--scope a --scope b` both work.
    scopes: values.scope?.flatMap((scope) => scope.split(' ').filter(Boolean)),
    resource: values.resource ?? process.env.KEYCARD_RESOURCE ?? Object.keys(config.resources)[0],
    expiresIn,
  });
  console.log(access);
  return 0;
}

function env(args: string[]): number {
  const config = configFrom(args);
  for (const line of environmentOf({ issuer: `http://127.0.0.1:${config.port}` }, config)) console.log(line);
  return 0;
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
