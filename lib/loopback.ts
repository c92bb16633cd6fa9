import { BlockList, isIP } from 'node:net';

/** 127.0.0.0/8 and ::1; BlockList also matches their IPv4-mapped and non-canonical IPv6 spellings. */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * True for an IP address of this machine's loopback interface: 127.0.0.0/8 and ::1, in any
 * spelling Node reports (`::ffff:127.0.0.1` on a dual-stack socket, `0:0:0:0:0:0:0:1`). False for
 * anything else, including `undefined` (a Unix socket or a fake request has no address).
 */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const family = isIP(address);
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * True for host names that can only mean this machine: `localhost` (and `*.localhost`, RFC 6761),
 * 127.0.0.0/8 and ::1 (brackets allowed). Used to allow plain http to local zones and to derive a
 * resource identifier in local development, never for anything reachable from elsewhere.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isLoopbackAddress(host);
}
