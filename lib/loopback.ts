import { isIP } from 'node:net';

/**
 * True for host names that can only mean this machine: `localhost` (and `*.localhost`, RFC 6761),
 * 127.0.0.0/8 and ::1. Used to allow plain http to local zones and to derive a resource identifier
 * in local development, never for anything reachable from elsewhere.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}
