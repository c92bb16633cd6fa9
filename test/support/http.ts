import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

/**
 * One HTTP request over loopback. `headers` is a list of pairs so a test can send a header twice
 * (Node keeps duplicates when given a flat raw-header array).
 */
export function send(
  baseUrl: string,
  method: string,
  path: string,
  headers: [string, string][] = [],
  body?: string,
): Promise<HttpAnswer> {
  const url = new URL(path, baseUrl);
  return sendTo(url, method, url.pathname + url.search, headers, body);
}

/**
 * Like {@link send}, with the request target sent exactly as given: no dot-segment removal, no
 * fragment stripping, no percent-encoding (for path-spelling tests).
 */
export function sendVerbatim(baseUrl: string, method: string, target: string, headers: [string, string][] = []): Promise<HttpAnswer> {
  return sendTo(new URL(baseUrl), method, target, headers);
}

function sendTo(url: URL, method: string, target: string, headers: [string, string][], body?: string): Promise<HttpAnswer> {
  // With a raw header list Node adds no Host header of its own.
  const all = headers.some(([name]) => name.toLowerCase() === 'host') ? headers : [['Host', url.host], ...headers];
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { method, host: url.hostname, port: url.port, path: target, headers: all.flat(), agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error('test request timed out')));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Writes raw bytes on a socket and returns the status line's code: for inputs Node must reject itself. */
export function sendRaw(baseUrl: string, raw: string): Promise<{ status: number; text: string }> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(raw, 'latin1'));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      text += d;
    });
    socket.on('end', () => resolve({ status: Number(text.split(' ')[1]), text }));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
  });
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
  /** Parameter names in order, duplicates included (INV1). */
  names: string[];
}

/** Parses one `WWW-Authenticate` challenge with quoted parameters. */
export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  if (typeof header !== 'string') return undefined;
  const match = /^(\S+)(?:\s+(.*))?$/.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const names: string[] = [];
  const rest = match[2] ?? '';
  const param = /\s*([A-Za-z_]+)="([^"\\]*)"\s*(?:,|$)/y;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = param.exec(rest))) {
    names.push(m[1]);
    params[m[1]] = m[2];
    consumed = param.lastIndex;
  }
  if (consumed !== rest.length) throw new Error(`unparseable challenge: ${header}`);
  return { scheme: match[1], params, names };
}

/**
 * A browser stand-in for the PKCE helper's `openBrowser`: the local zone signs its dev user in at
 * once, so following the authorization redirect to the loopback callback completes the sign-in.
 */
export async function followAuthorization(url: string): Promise<void> {
  const authorize = await fetch(url, { redirect: 'manual' });
  const location = authorize.headers.get('location');
  if (location) await fetch(location);
}
