import { afterAll, afterEach, beforeAll } from '@jest/globals';
import { Body, Controller, Get, HttpCode, Post, Sse } from '@nestjs/common';
import { Redis } from 'ioredis';
import { interval, map } from 'rxjs';
import { Agent, KeycardRevocationModule, RequireFreshness, RequireScopes, RevocationService, type AgentContext, type KeycardRevocationOptions, type Revocation } from '../../lib/index.js';
import { RedisRevocationFeed } from '../../lib/redis/index.js';
import { TestZone } from '../../lib/testing/index.js';
import { R } from './forge.js';
import { startApp, type AdapterName, type AppShape, type RunningApp } from './keycard-app.js';
import { send, type HttpAnswer } from './http.js';
import { startRedis, type RunningRedis } from './redis-server.js';

/** The API's credentials at the zone (the introspection of freshness routes authenticates with them). */
const REVOCATION_CLIENT = { clientId: 'revocation-api', clientSecret: 'revocation-api-secret' };

/** `Lmax` of the catalogue profile (§0): 3 600 s. */
export const LMAX_SECONDS = 3600;

@Controller()
class RevocationTestController {
  constructor(private readonly revocations: RevocationService) {}

  @Get('orders')
  @RequireScopes('orders:read')
  orders(@Agent() agent: AgentContext) {
    return { sub: agent.subject, sid: agent.sessionId };
  }

  @Get('fresh')
  @RequireFreshness()
  @RequireScopes('orders:read')
  fresh() {
    return { fresh: true };
  }

  @Sse('feed')
  @RequireScopes('orders:read')
  feed() {
    return interval(50).pipe(map((n) => ({ data: { n } })));
  }

  /** The app's own admin route (the module mounts none, Q35). */
  @Post('admin/revoke')
  @HttpCode(200)
  @RequireScopes('admin')
  async revoke(@Body() body: Revocation) {
    await this.revocations.revoke(body);
    return { revoked: true };
  }

  @Post('admin/restore')
  @HttpCode(200)
  @RequireScopes('admin')
  async restore(@Body() body: Revocation) {
    await this.revocations.restore(body);
    return { restored: true };
  }
}

export interface RevocationInstance extends RunningApp {
  revocations: RevocationService;
  redis?: Redis;
  get(token: string, path?: string): Promise<HttpAnswer>;
}

/**
 * One instance of the catalogue's §X profile: a real Nest app with the Keycard and revocation
 * modules, sharing revocations through the real Redis at `redisUrl` when given.
 */
export async function startInstance(
  zone: TestZone,
  options: {
    redisUrl?: string;
    adapter?: AdapterName;
    revocation?: Partial<KeycardRevocationOptions>;
    keycard?: Record<string, unknown>;
    /** More of the app: modules, providers and controllers beside the suite's own. */
    extra?: Pick<AppShape, 'imports' | 'providers' | 'controllers'>;
  } = {},
): Promise<RevocationInstance> {
  const redis = options.redisUrl === undefined ? undefined : new Redis(options.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  redis?.on('error', () => undefined);
  const feed = redis === undefined ? undefined : new RedisRevocationFeed({ redis });
  // Freshness routes also introspect their token at the zone (X29), as this client.
  zone.addClient(REVOCATION_CLIENT);
  const running = await startApp(
    options.adapter ?? 'express',
    { zoneUrl: zone.issuer, resource: R, auditLog: true, clockToleranceSeconds: 60, clientCredentials: REVOCATION_CLIENT, ...options.keycard },
    {
      imports: [KeycardRevocationModule.forRoot({ maxTokenLifetimeSeconds: LMAX_SECONDS, feed, ...options.revocation }), ...(options.extra?.imports ?? [])],
      providers: options.extra?.providers,
      controllers: [RevocationTestController, ...(options.extra?.controllers ?? [])],
    },
  );
  return {
    ...running,
    redis,
    revocations: running.app.get(RevocationService),
    get: (token: string, path = '/orders') => send(running.url, 'GET', path, [['Authorization', `Bearer ${token}`]]),
    close: async () => {
      await running.close();
      redis?.disconnect();
    },
  };
}

/** Polls `check` every 20 ms until it holds; fails after `timeoutMs` (generous: the bound itself is measured by bench:revocation). */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The suite's real redis-server: started before its tests, emptied after each, stopped after all. */
export interface SuiteRedis {
  /** The running server (a test that restarts it on the same port puts the new one here). */
  server: RunningRedis;
  readonly url: string;
}

export function redisForSuite(): SuiteRedis {
  const holder = {
    server: undefined as unknown as RunningRedis,
    get url() {
      return holder.server.url;
    },
  };
  beforeAll(async () => {
    holder.server = await startRedis();
  });
  afterAll(async () => {
    await holder.server?.close();
  });
  afterEach(async () => {
    const client = new Redis(holder.url);
    await client.flushall();
    client.disconnect();
  });
  return holder;
}

/** A suite's zone (started before its tests, stopped after) and instances (closed after each test). */
export interface RevocationSuite {
  readonly zone: TestZone;
  /** Starts an instance that is closed after the test. */
  instance(options?: Parameters<typeof startInstance>[1]): Promise<RevocationInstance>;
}

export function revocationSuite(): RevocationSuite {
  let zone: TestZone | undefined;
  const running: RevocationInstance[] = [];
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((instance) => instance.close()));
  });
  return {
    get zone() {
      return zone!;
    },
    instance: async (options = {}) => {
      const started = await startInstance(zone!, options);
      running.push(started);
      return started;
    },
  };
}

/** The catalogue's SSF receiver profile (§0): its audience, the transmitter's Authorization value, the receiver options. */
export const SSF_PROFILE = {
  audience: 'https://api.example.com/ssf',
  authorization: 'Bearer receiver-secret-0123456789',
  sessionRevoked: 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
  get revocation(): Partial<KeycardRevocationOptions> {
    return { ssf: { audience: this.audience, push: { authorization: this.authorization }, streamId: 'stream-1' } };
  },
} as const;
