/**
 * Development mode (no `resource` configured, catalogue Q15): which requests may derive the
 * resource from their own origin. The connection's local address cannot be chosen by a test over
 * loopback, so these rows drive the resolver with fake sockets (M16 says a unit test is enough).
 */
import { describe, expect, it } from '@jest/globals';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import type { Clock } from '../clock.js';
import { denialLogLevel } from '../logging/denial-log-level.js';
import { normaliseOptions } from '../keycard-options.js';
import { InvalidRequestException, ResourceNotConfiguredException } from './keycard.exceptions.js';
import { rememberLocalAddress } from './local-address.js';
import { ResourceResolver } from './resource-resolver.js';

interface FakeRequest {
  host?: string | string[];
  localAddress?: string;
  encrypted?: boolean;
}

function resolverWithLog(clock: Clock = { now: () => 0 }): { resolver: ResourceResolver; lines: string[] } {
  const lines: string[] = [];
  const record = (message: unknown) => lines.push(String(message));
  const options = normaliseOptions({
    zoneUrl: 'https://zone.example.com',
    logger: { log: record, warn: record, error: record },
  });
  return { resolver: new ResourceResolver(options, new HttpAdapterHost(), clock), lines };
}

/** A request on a fake socket; the local address is 127.0.0.1 unless given (even as `undefined`). */
function request(fake: FakeRequest): IncomingMessage {
  const { host, encrypted } = fake;
  const localAddress = 'localAddress' in fake ? fake.localAddress : '127.0.0.1';
  const hosts = host === undefined ? [] : Array.isArray(host) ? host : [host];
  return {
    method: 'GET',
    url: '/orders',
    headers: hosts.length > 0 ? { host: hosts[0] } : {},
    headersDistinct: hosts.length > 0 ? { host: hosts } : {},
    socket: { localAddress, encrypted },
  } as unknown as IncomingMessage;
}

/** What `forRequest` did: the derived identifier, or the class and status of what it threw. */
function outcome(resolver: ResourceResolver, fake: FakeRequest | IncomingMessage): string {
  try {
    return resolver.forRequest('socket' in fake ? fake : request(fake)).id;
  } catch (error) {
    const status = (error as { getStatus?: () => number }).getStatus?.();
    return `${(error as Error).constructor.name} ${status}`;
  }
}

const NOT_CONFIGURED = `${ResourceNotConfiguredException.name} 500`;
const MALFORMED = `${InvalidRequestException.name} 400`;

describe('ResourceResolver without a configured resource', () => {
  it.each([
    '10.1.2.3',
    '192.168.1.5',
    '0.0.0.0',
    '::',
    '2001:db8::1',
    '::ffff:10.0.0.1',
    'fe80::1',
    undefined,
  ])(
    'M16 connection to local address %s with Host: localhost → 500 resource not configured, logged',
    (localAddress) => {
      const { resolver, lines } = resolverWithLog();
      expect(outcome(resolver, { host: 'localhost', localAddress })).toBe(NOT_CONFIGURED);
      expect(outcome(resolver, { host: 'localhost:3000', localAddress })).toBe(NOT_CONFIGURED);
      expect(outcome(resolver, { host: '127.0.0.1:3000', localAddress })).toBe(NOT_CONFIGURED);
      // Logged once per interval, not once per request (anyone on the network could flood the log).
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("configure KeycardModule 'resource'");
      expect(lines[0]).toContain('not a loopback address');
    },
  );

  it('M16 a request whose connection closed is judged by the address remembered on arrival (socket.io long-polling), never by its absence', () => {
    const { resolver } = resolverWithLog();
    for (const [arrived, expected] of [['127.0.0.1', 'http://localhost:3000'], ['10.1.2.3', NOT_CONFIGURED]] as const) {
      const polled = request({ host: 'localhost:3000', localAddress: arrived });
      rememberLocalAddress(polled);
      // Node reports no local address once the connection is gone; a second remember keeps the first.
      (polled.socket as { localAddress?: string }).localAddress = undefined;
      rememberLocalAddress(polled);
      expect({ arrived, answer: outcome(resolver, polled) }).toEqual({ arrived, answer: expected });
    }
  });

  it('M16 the decision holds after the same Host was accepted on a loopback connection', () => {
    const { resolver } = resolverWithLog();
    expect(outcome(resolver, { host: 'localhost:3000', localAddress: '127.0.0.1' })).toBe(
      'http://localhost:3000',
    );
    expect(outcome(resolver, { host: 'localhost:3000', localAddress: '10.1.2.3' })).toBe(
      NOT_CONFIGURED,
    );
  });

  it.each([
    ['127.0.0.1', 'localhost:3000', 'http://localhost:3000'],
    ['127.8.9.10', 'LOCALHOST:3000', 'http://localhost:3000'],
    ['::1', '[::1]:3000', 'http://[::1]:3000'],
    ['::ffff:127.0.0.1', '127.0.0.1:3000', 'http://127.0.0.1:3000'],
    ['0:0:0:0:0:0:0:1', '[0:0:0:0:0:0:0:1]:8080', 'http://[::1]:8080'],
    ['127.0.0.1', 'localhost', 'http://localhost'],
    ['127.0.0.1', 'localhost:80', 'http://localhost'],
    ['127.0.0.1', 'app.localhost:1', 'http://app.localhost:1'],
    ['127.0.0.1', 'localhost:65535', 'http://localhost:65535'],
  ])(
    'M16 loopback connection (%s) with Host %s → development mode, resource %s',
    (localAddress, host, id) => {
      const { resolver, lines } = resolverWithLog();
      expect(outcome(resolver, { host, localAddress })).toBe(id);
      expect(lines).toEqual([]);
    },
  );

  it('M16 a TLS connection derives an https origin (default port dropped)', () => {
    const { resolver } = resolverWithLog();
    expect(outcome(resolver, { host: 'localhost:443', encrypted: true })).toBe('https://localhost');
    expect(outcome(resolver, { host: 'localhost:8443', encrypted: true })).toBe(
      'https://localhost:8443',
    );
  });

  it.each([
    'api.example.com',
    'api.example.com:3000',
    '10.0.0.1',
    '[2001:db8::1]:80',
    'localhost.example.com',
    '127.0.0.1.nip.io',
  ])('M16 loopback connection with non-loopback Host %s → 500 resource not configured', (host) => {
    const { resolver, lines } = resolverWithLog();
    expect(outcome(resolver, { host })).toBe(NOT_CONFIGURED);
    expect(lines[0]).toContain('non-loopback host');
  });

  it('M16 many requests to a non-loopback Host: each answers 500, the error is logged once per minute, and the refusal itself only at debug', () => {
    let now = 0;
    const { resolver, lines } = resolverWithLog({ now: () => now });
    for (let i = 0; i < 100; i += 1) expect(outcome(resolver, { host: 'evil.example' })).toBe(NOT_CONFIGURED);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('logged once per 1 min');
    now += 59_999;
    expect(outcome(resolver, { host: 'evil.example' })).toBe(NOT_CONFIGURED);
    expect(lines).toHaveLength(1);
    now += 1;
    for (let i = 0; i < 100; i += 1) expect(outcome(resolver, { host: 'evil.example' })).toBe(NOT_CONFIGURED);
    expect(lines).toHaveLength(2);
    // The per-request denial line ("denied … status=500") would double the flood: debug, like a misconfigured zone's 503.
    expect(denialLogLevel(new ResourceNotConfiguredException())).toBe('debug');
  });

  it.each([
    'localhost:99999',
    'localhost:0',
    '[::1]:70000',
    'localhost:abc',
    'localhost:65536',
    'localhost:',
    'localhost:-1',
    'localhost:1e3',
    'localhost: 80',
    '[::1',
    '::1',
    '[::1]x',
    '[fe80::1%25lo]:80',
    'user@localhost',
    'localhost/x',
    'localhost?',
    'local_host',
    '-localhost',
    'localhost.',
    '',
    `${'a'.repeat(64)}.localhost`,
  ])('M15 Host %j → 400 invalid_request, never a TypeError, nothing logged', (host) => {
    const { resolver, lines } = resolverWithLog();
    expect(outcome(resolver, { host })).toBe(MALFORMED);
    expect(outcome(resolver, { host, localAddress: '10.1.2.3' })).toBe(MALFORMED);
    expect(lines).toEqual([]);
  });

  it('M15 a Host that passes the grammar but not IDNA (new URL() would throw) → 400 invalid_request', () => {
    const { resolver, lines } = resolverWithLog();
    expect(outcome(resolver, { host: 'xn--a.localhost:3000' })).toBe(MALFORMED);
    expect(lines).toEqual([]);
  });

  it('M15 no Host, or two Host headers (RFC 9112 §3.2) → 400 invalid_request', () => {
    const { resolver } = resolverWithLog();
    expect(outcome(resolver, {})).toBe(MALFORMED);
    expect(outcome(resolver, { host: ['localhost:3000', 'localhost:3000'] })).toBe(MALFORMED);
  });

  it('the metadata path of a derived resource is looked up the same way', () => {
    const { resolver } = resolverWithLog();
    const found = resolver.forMetadataPath(
      request({ host: 'localhost:3000' }),
      '/.well-known/oauth-protected-resource',
    );
    expect(found?.id).toBe('http://localhost:3000');
    expect(() =>
      resolver.forMetadataPath(
        request({ host: 'localhost:99999' }),
        '/.well-known/oauth-protected-resource',
      ),
    ).toThrow(InvalidRequestException);
  });
});
