// A redis-server for a bench: on a free loopback port, without persistence, in its own temporary
// directory (as test/support/redis-server.ts starts one for the tests).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

const accepts = (port) =>
  new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

/** Starts it and resolves once it accepts connections: `{ port, stop() }` (stop waits for it to exit and removes its directory). */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'keycard-bench-redis-'));
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // A bench that throws must not leave the server running.
  process.once('exit', () => child.kill('SIGTERM'));
  for (let i = 0; !(await accepts(port)); i++) {
    if (i > 400 || child.exitCode !== null) throw new Error('redis-server did not start (is it on the PATH?)');
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
