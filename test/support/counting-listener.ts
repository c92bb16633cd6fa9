import { createServer, type Server } from 'node:http';

/**
 * A loopback server standing in for a host the module must never contact (an attacker's `jku`,
 * a redirect target, a foreign `jwks_uri`): any hit means token or zone content steered a request.
 */
export async function startCountingListener(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    hits: () => hits,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
