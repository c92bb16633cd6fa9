import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import { VERIFYING, type VerifyingHolder } from '../decision/shared-verification.js';

/** The servers whose requests are already given a `user` field (one listener per server, whatever the number of modules). */
const seeded = new WeakSet<object>();

/**
 * Gives a request its `user` field and the field where the calls of one GraphQL operation share
 * their token's verification (both undefined) as Node makes it, before any framework code sees it.
 */
function seedUser(request: IncomingMessage): void {
  (request as IncomingMessage & { user?: unknown }).user = undefined;
  (request as IncomingMessage & VerifyingHolder)[VERIFYING] = undefined;
}

/**
 * Over Express, gives every request its `user` field as the HTTP server emits it (a `request`
 * listener put first), so the guard's `request.user = agent` writes a field the request already
 * has; likewise the shared verification of a GraphQL operation's fields (`VERIFYING`). Why: Express gives each request its own prototype (`Object.setPrototypeOf` in `app.handle`)
 * and then adds fields to it, and V8 then builds a new hidden class for every request; a field
 * added after that point (`user`, by any guard) copies the request's whole shape, about 1.5 KB
 * and several µs per request (issue 24, `npm run bench:pipeline-ab`). Added by Node's own code, before
 * that point, the field costs a shared, cached shape change. Reading `request.user` is unchanged
 * (undefined until a guard sets it); `'user' in request` is now true on every request.
 *
 * Nothing is done for Fastify (its requests are objects of one class, whose shapes V8 shares) or
 * when the adapter has no Node HTTP server of its own (an app served through another server).
 */
@Injectable()
export class HttpRequestShape implements OnApplicationBootstrap {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  onApplicationBootstrap(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (adapter?.getType?.() !== 'express') return;
    const server = adapter.getHttpServer?.() as { prependListener?: (event: 'request', listener: typeof seedUser) => unknown } | undefined;
    if (server === undefined || typeof server.prependListener !== 'function' || seeded.has(server)) return;
    seeded.add(server);
    server.prependListener('request', seedUser);
  }
}
