/**
 * O9 attack trial (trial 18c): a graphql-ws or Mercurius connection that closes while its
 * `connection_init` is judged (the judgement waits on an app's asynchronous token validator, such as
 * a revocation lookup), with subscribe frames written behind it. Once the judgement ends, nothing of
 * the connection goes on: no subscription runs, the app's own `onConnect` is not called for a
 * connection that is gone, and no expiry binding stays behind (before: the carrier lifecycle kept
 * one, with its timer and the closed socket, until the token's `exp`, and counted it as open).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Int, Resolver, Subscription } from '@nestjs/graphql';
import WebSocket from 'ws';
import { CarrierLifecycle, KEYCARD_TOKEN_VALIDATORS, Public, type AgentContext, type TokenValidator } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { startGraphQLApp } from './support/graphql-app.js';

let subscriptionsRun = 0;

@Resolver()
class Ticks {
  @Public()
  @Subscription(() => Int)
  async *ticks(): AsyncGenerator<{ ticks: number }> {
    subscriptionsRun++;
    yield { ticks: 1 };
  }
}

/** An app validator whose judgement of a connection opening ends when the test lets it. */
class GatedOpenings implements TokenValidator {
  openings = 0;
  private open!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.open = resolve));
  validate(_agent: AgentContext, call: unknown): Promise<void> | void {
    if (call !== undefined) return;
    this.openings++;
    return this.gate;
  }
  release(): void {
    this.open();
  }
}

/** Waits (polling, 5 s at most) until `done()` holds; never a timed assertion. */
async function until(done: () => boolean | Promise<boolean>): Promise<void> {
  for (let waited = 0; !(await done()) && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe.each(['apollo', 'mercurius'] as const)('O9 a connection closed while its connection_init is judged (%s)', (driver) => {
  let zone: TestZone;
  let gql: Awaited<ReturnType<typeof startGraphQLApp>>;
  const validator = new GatedOpenings();
  let appOnConnect = 0;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    const theirs = { onConnect: () => ((appOnConnect += 1), true) };
    const providers = [Ticks, { provide: KEYCARD_TOKEN_VALIDATORS, useValue: [validator] }];
    gql = await (driver === 'apollo'
      ? startGraphQLApp('apollo', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { providers, graphqlWs: [theirs] })
      : startGraphQLApp('mercurius', { zoneUrl: zone.issuer, resource: R, auditLog: true }, { providers, mercuriusSubscription: [theirs] }));
  });
  afterAll(async () => {
    await gql?.app.close();
    await zone?.stop();
  });

  it(`O9 ${driver}: the client writes connection_init and 50 subscribe frames, then drops the socket before the judgement ends: no subscription runs, the app's onConnect is not called, no carrier stays bound; no token in the log`, async () => {
    const lifecycle = gql.app.get(CarrierLifecycle);
    const bound = lifecycle.size;
    const token = zone.issueToken({ client_id: 'agent-gone', scope: 'orders:read' });
    const server = gql.app.getHttpServer() as { getConnections(cb: (error: Error | null, count: number) => void): void };
    const connections = () => new Promise<number>((resolve) => server.getConnections((_error, count) => resolve(count)));
    const socket = new WebSocket(gql.wsUrl, 'graphql-transport-ws');
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
    for (let i = 0; i < 50; i++) socket.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: 'subscription { ticks }' } }));
    await until(() => validator.openings === 1);
    expect(validator.openings).toBe(1);
    socket.terminate();
    await until(async () => (await connections()) === 0); // the server saw the socket go
    expect(await connections()).toBe(0);
    validator.release();
    const audited = () => gql.logger.lines.filter((line) => line.includes('"keycard.audit"') && line.includes('"agent":"agent-gone"'));
    await until(() => audited().length > 0); // the judgement is over
    await new Promise((resolve) => setTimeout(resolve, 100)); // what would follow it (the app's hook, the binding) has had its turn
    expect({ subscriptionsRun, appOnConnect, bound: lifecycle.size - bound }).toEqual({ subscriptionsRun: 0, appOnConnect: 0, bound: 0 });
    for (const line of gql.logger.lines) expect(line.includes(token.split('.')[2]!)).toBe(false);
  }, 60_000);
});
