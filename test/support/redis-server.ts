import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';

/** A real `redis-server` on a free loopback port, with its own temporary directory. */
export interface RunningRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGTERM, waits for it to exit); the directory stays until {@link close}. */
  stop(): Promise<void>;
  /** Stops the server if it still runs and removes its directory. */
  close(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 10_000;

/**
 * Why Redis tests cannot run here, or undefined when `redis-server` is on the PATH. In CI (`CI=true`)
 * a missing server is an error, never a skip: `.ci/run` installs it.
 */
export function redisUnavailableReason(): string | undefined {
  const found = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  if (!found.error && found.status === 0) return undefined;
  if (process.env.CI === 'true') throw new Error('redis-server is not on the PATH in CI (.ci/run installs it): Redis tests cannot be skipped there');
  const reason = 'redis-server is not on the PATH (install it, e.g. apt-get install redis-server, to run the Redis tests)';
  console.warn(`skipping Redis tests: ${reason}`);
  return reason;
}

/**
 * Starts `redis-server` on 127.0.0.1 without persistence and resolves once it accepts connections;
 * on `port` when given (to start a stopped server again where its clients reconnect).
 */
export async function startRedis(options: { port?: number } = {}): Promise<RunningRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'keycard-redis-'));
  const port = options.port ?? (await freePort());
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForPort(port, child);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start: ${(error as Error).message}\n${output}`);
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
    if (await canConnect(port)) return;
    if (Date.now() > deadline) throw new Error(`no connection on port ${port} within ${STARTUP_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}
