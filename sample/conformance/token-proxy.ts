import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A running {@link startTokenProxy}. */
export interface TokenProxy {
  /** `http://localhost:<port>`: the public origin the API is configured with. */
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * A loopback reverse proxy that adds `Authorization: Bearer <token()>` to every request that has
 * none, and passes everything else through untouched (method, path, `Host`, `Origin`, every other
 * header in its original case, the body, streamed answers). The conformance suite's server runner
 * cannot send a token, so without it every scenario would stop at the guard's 401; through it, the
 * transport checks run behind the guard, as a client with a valid token meets them.
 */
export async function startTokenProxy(target: { port: number }, token: () => string): Promise<TokenProxy> {
  const server = createServer((req, res) => forward(req, res, { port: target.port, token: token() }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { origin: `http://localhost:${port}`, close: () => closeServer(server) };
}

function forward(req: IncomingMessage, res: ServerResponse, to: { port: number; token: string }): void {
  const headers = withToken(req.rawHeaders, to.token);
  const upstream = request({ host: '127.0.0.1', port: to.port, method: req.method, path: req.url, headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
    answer.pipe(res);
  });
  upstream.on('error', () => res.headersSent ? res.destroy() : res.writeHead(502).end());
  res.on('close', () => upstream.destroy());
  req.pipe(upstream);
}

/** The request's own header list (case and order kept), plus the token when it carries no `Authorization`. */
function withToken(rawHeaders: string[], token: string): string[] {
  const has = rawHeaders.some((name, i) => i % 2 === 0 && name.toLowerCase() === 'authorization');
  return has ? rawHeaders : [...rawHeaders, 'Authorization', `Bearer ${token}`];
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
