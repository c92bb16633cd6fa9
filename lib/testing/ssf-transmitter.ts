import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import type { IssueTokenOptions } from './test-zone.js';

/** The part of `TestZone` a transmitter signs with. */
interface SigningZone {
  readonly issuer: string;
  issueToken(claims?: Record<string, unknown>, options?: IssueTokenOptions): string;
}

/**
 * Where a {@link SsfTransmitter} delivers: the receiver's audience, and for push delivery (RFC 8935)
 * its endpoint and the `authorization_header` it was given.
 */
export interface SsfTransmitterOptions {
  audience: string;
  pushUrl?: string;
  authorization?: string;
}

/** A push delivery's answer as the transmitter saw it. */
export interface PushAnswer {
  status: number;
  body: string;
}

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';

/**
 * The test zone as an SSF 1.0 transmitter, for tests and demos only: Security Event Tokens
 * (RFC 8417, `typ` `secevent+jwt`) signed with the zone's keys, and RFC 8935 push delivery. Every
 * SET gets `iss`, `aud`, `iat`, a fresh `jti` and `txn` unless given; `sub`, `exp` and
 * `client_id` are never set (SSF 1.0 §4.1.2, §4.1.7).
 */
export class SsfTransmitter {
  constructor(
    private readonly zone: SigningZone,
    private readonly options: SsfTransmitterOptions,
  ) {}

  /** A SET with one event `type` about `subject` (`sub_id`); `claims` add or (with `undefined`) remove claims. */
  set(type: string, event: Record<string, unknown>, subject: Record<string, unknown>, claims: Record<string, unknown> = {}, options: IssueTokenOptions = {}): string {
    return this.zone.issueToken(
      {
        sub: undefined, exp: undefined, client_id: undefined, scope: undefined,
        aud: this.options.audience,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        txn: randomUUID(),
        sub_id: subject,
        events: { [type]: event },
        ...claims,
      },
      { ...options, header: { typ: 'secevent+jwt', ...options.header } },
    );
  }

  /** CAEP `session-revoked` for the zone's session `sessionId` (of `subject` when given: a complex subject). */
  sessionRevoked(sessionId: string, subject?: string): string {
    const session = { format: 'opaque', id: sessionId };
    const sub = subject === undefined ? session : { format: 'complex', session, user: { format: 'iss_sub', iss: this.zone.issuer, sub: subject } };
    return this.set(`${CAEP}session-revoked`, { event_timestamp: Math.floor(Date.now() / 1000), initiating_entity: 'admin' }, sub);
  }

  /**
   * CAEP `session-revoked` for every session of agent `agentId` (the client) acting for `subject`:
   * a complex subject with `application` and `user` (SSF 1.0 §3.3).
   */
  agentSessionsRevoked(agentId: string, subject: string): string {
    const sub = { format: 'complex', application: { format: 'opaque', id: agentId }, user: { format: 'iss_sub', iss: this.zone.issuer, sub: subject } };
    return this.set(`${CAEP}session-revoked`, { event_timestamp: Math.floor(Date.now() / 1000) + 1, initiating_entity: 'user' }, sub);
  }

  /** Pushes `set` to the receiver (RFC 8935 §2): `Content-Type: application/secevent+jwt`, the configured Authorization. */
  push(set: string, headers: Record<string, string | undefined> = {}): Promise<PushAnswer> {
    const url = this.options.pushUrl;
    if (url === undefined) return Promise.reject(new TypeError('SsfTransmitter: no pushUrl'));
    const all: Record<string, string> = {};
    const given = { 'Content-Type': 'application/secevent+jwt', Authorization: this.options.authorization, ...headers };
    for (const [name, value] of Object.entries(given)) if (value !== undefined) all[name] = value;
    return new Promise((resolve, reject) => {
      const req = request(url, { method: 'POST', headers: all, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end(set);
    });
  }
}
