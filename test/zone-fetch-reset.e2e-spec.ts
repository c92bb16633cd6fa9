/**
 * A zone call that meets a reset connection (catalogue E-family hardening): a pooled keep-alive
 * connection the zone closed while it sat idle fails the next GET with ECONNRESET / "other side
 * closed" before any byte of an answer. A GET is idempotent (RFC 9110 §9.2.2), so the module sends
 * it once more on a new connection at once, instead of answering 503 for a back-off interval. It
 * retries once only: a zone that resets every connection is still unavailable.
 * A raw TCP server on loopback plays the zone, so the reset is real.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, type Server, type Socket } from 'node:net';
import { fetchZoneJson, ZoneFetchError } from '../lib/zone/zone-fetch.js';

const BODY = '{"issuer":"http://127.0.0.1"}';
const ANSWER = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\nconnection: close\r\n\r\n${BODY}`;

/** A server that resets the first `resets` connections once it has read their request, then answers. */
async function resettingZone(resets: number): Promise<{ server: Server; url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((socket: Socket) => {
    socket.once('data', () => {
      requests++;
      if (requests <= resets) socket.resetAndDestroy();
      else socket.end(ANSWER);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/jwks`, requests: () => requests };
}

describe('zone GETs and reset connections', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve));
  });

  it('a reset connection is retried once, at once, and the answer is used', async () => {
    const zone = await resettingZone(1);
    server = zone.server;
    await expect(fetchZoneJson(fetch, zone.url)).resolves.toEqual({ issuer: 'http://127.0.0.1' });
    expect(zone.requests()).toBe(2);
  });

  it('a second reset is the failure it was: one retry only, an operator message with no answer body', async () => {
    const zone = await resettingZone(5);
    server = zone.server;
    const failure = fetchZoneJson(fetch, zone.url);
    await expect(failure).rejects.toBeInstanceOf(ZoneFetchError);
    await expect(failure).rejects.toThrow(/^GET http:\/\/127\.0\.0\.1:\d+\/jwks failed: (ECONNRESET|UND_ERR_SOCKET)$/);
    expect(zone.requests()).toBe(2);
  });
});
