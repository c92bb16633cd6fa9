import { isIP } from 'node:net';

/** The parts of a `Host` header this module relies on, normalised. */
export interface HostHeader {
  /** Lower-cased name or address; IPv6 literals keep their brackets (`[::1]`). */
  readonly hostname: string;
  /** 1–65535, or `undefined` when the header names none (the scheme's default port). */
  readonly port: number | undefined;
}

/** A DNS label: letters, digits and inner hyphens, at most 63 characters (RFC 1123 §2.1). */
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/** `uri-host [ ":" port ]` (RFC 9110 §7.2), narrowed to DNS names, IPv4 and bracketed IPv6. */
const HOST_HEADER = new RegExp(`^(${LABEL}(?:\\.${LABEL})*|\\[[0-9A-Fa-f:.]+\\])(?::(\\d{1,5}))?$`);
const MAX_HOST_LENGTH = 255;

/**
 * Parses a `Host` header strictly, without throwing: a DNS name, an IPv4 address or a bracketed
 * IPv6 address, and an optional port of 1–65535. Anything else (a path, userinfo, an empty or
 * out-of-range port, a zone id, `_` in a name) gives `undefined`, so that no URL is ever built from
 * it: `new URL()` throws a TypeError on `localhost:99999`, which must never reach a request (M15).
 *
 * @param value the header as received, `undefined` when absent.
 */
export function parseHostHeader(value: string | undefined): HostHeader | undefined {
  if (value === undefined || value.length > MAX_HOST_LENGTH) return undefined;
  const match = HOST_HEADER.exec(value);
  if (match === null) return undefined;
  const [, name, digits] = match;
  if (name.startsWith('[') && isIP(name.slice(1, -1)) !== 6) return undefined;
  const port = digits === undefined ? undefined : Number(digits);
  if (port !== undefined && (port < 1 || port > 65_535)) return undefined;
  return { hostname: name.toLowerCase(), port };
}
