import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The first port of the kernel's ephemeral range (Linux: `ip_local_port_range`, 32768 by default),
 * the ports `listen(0)` and every outgoing connection take.
 */
function ephemeralStart(): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start > 20_000 ? start : 32_768;
  } catch {
    return 32_768;
  }
}

/** Ports below the ephemeral range that freePort draws from: never handed out by the kernel on its own. */
const LOWEST = 20_000;
const BELOW = ephemeralStart();

/** True when `port` can be bound on 127.0.0.1 right now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port free on 127.0.0.1 right now, for a server a test starts by port number (gRPC and TCP
 * microservices, redis-server, redirect URIs registered in advance), or one where nothing listens.
 *
 * Drawn at random below the kernel's ephemeral range and checked free: a port `listen(0)` had
 * answered (from that range) could be taken, before the test bound it, by any outgoing connection
 * of a parallel Jest worker or by another app's `listen(0)`, which failed a gRPC suite in CI with
 * EADDRINUSE. Below the range only another freePort draw could take it (1 in ~12 000 per draw).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (BELOW - LOWEST));
    if (await canBind(port)) return port;
  }
  throw new Error(`freePort: no free port among 50 drawn from ${LOWEST}–${BELOW - 1} on 127.0.0.1`);
}
