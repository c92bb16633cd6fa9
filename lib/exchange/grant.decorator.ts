import { UseInterceptors } from '@nestjs/common';
import { KEYCARD_GRANT } from '../keycard.constants.js';
import { GrantInterceptor } from './grant.interceptor.js';

/** Scopes for one upstream resource: a space-delimited string or a list. @publicApi */
export type GrantScopes = string | readonly string[];

/**
 * The upstream resources a handler needs: one resource, a list of resources (the zone's default
 * scopes), or a map resource → scopes.
 * @publicApi
 */
export type GrantResources = string | readonly string[] | Readonly<Record<string, GrantScopes | undefined>>;

/**
 * How a grant exchanges. `actor: 'caller'` sends the caller's token as `actor_token` too (RFC 8693
 * §2.1), so the zone names the caller's agent in the upstream token's `act` claim, with the chain
 * so far nested inside (§4.1), and the upstream API sees who started the call
 * (`AgentContext.actor`, `@RequireActors()`). Without it the upstream token names this service as
 * the client and carries no `act`.
 * @publicApi
 */
export interface GrantOptions {
  /** @default none: no `actor_token` */
  actor?: 'caller';
}

/** One resource of a grant as stored in the metadata. @internal */
export interface GrantEntry {
  readonly resource: string;
  readonly scopes: readonly string[];
  /** Send the caller's token as `actor_token`. */
  readonly actor: boolean;
}

/** RFC 6749 §3.3 scope-token. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/**
 * Exchanges the caller's verified token, before the handler runs, for a token per named upstream
 * resource (RFC 8693 through {@link TokenExchangeService}: cached, collapsed with identical
 * concurrent exchanges, in parallel across resources). The handler receives the outcome with
 * `@Access()`: an {@link AccessContext} holding each resource's token or typed error. A failed
 * exchange never fails the request by itself: the handler decides. Works in every context the
 * guard judges (HTTP, GraphQL over HTTP and graphql-ws, gateway messages, microservices, MCP
 * tools), with the token the call was verified with (catalogue O18).
 *
 * Several `@Grant()`s on one handler, and a `@Grant()` on the controller, merge (scopes of a
 * resource named twice are joined).
 *
 * @param resources a resource URL, a list of them, or a map resource → scopes.
 * @param scopes scopes for every resource of the first argument, when it is a string or a list; or
 *   the {@link GrantOptions} after a map.
 * @param options {@link GrantOptions}, e.g. `{ actor: 'caller' }` to pass the caller on as actor.
 * @example
 * ```ts
 * @Grant({ 'https://api.github.example': 'repo:read', 'https://crm.internal': ['contacts:read'] })
 * @Get('summary')
 * summary(@Access() access: AccessContext) { … }
 * ```
 * @throws TypeError at startup for a resource that is not an absolute URL, an invalid scope or an
 *   unknown option.
 * @publicApi
 */
export function Grant(resources: GrantResources, scopes?: GrantScopes | GrantOptions, options?: GrantOptions): MethodDecorator & ClassDecorator {
  const scopesGiven = typeof scopes === 'string' || Array.isArray(scopes) ? (scopes as GrantScopes) : undefined;
  const actor = actorOf(scopesGiven === undefined && scopes !== undefined ? (scopes as GrantOptions) : options);
  const entries = toEntries(resources, scopesGiven).map((e) => Object.freeze({ ...e, actor }));
  const record = (target: object) => {
    const existing = (Reflect.getOwnMetadata(KEYCARD_GRANT, target) as readonly GrantEntry[] | undefined) ?? [];
    // Decorators apply bottom-up: prepend, so the merged grant keeps the order they are written in.
    Reflect.defineMetadata(KEYCARD_GRANT, Object.freeze([...entries, ...existing]), target);
    // One interceptor per target is enough: it reads every grant of the handler and its class.
    return existing.length === 0;
  };
  return (target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (!record(descriptor ? (descriptor.value as object) : target)) return;
    const intercept = UseInterceptors(GrantInterceptor);
    if (descriptor) intercept(target, key!, descriptor);
    else intercept(target as never);
  };
}

function actorOf(options: GrantOptions | undefined): boolean {
  if (options === undefined) return false;
  if (typeof options !== 'object' || options === null) throw new TypeError('@Grant: options must be an object: { actor? }');
  if (options.actor !== undefined && options.actor !== 'caller') throw new TypeError("@Grant: 'actor' must be 'caller' (or left out)");
  return options.actor === 'caller';
}

function toEntries(resources: GrantResources, scopes: GrantScopes | undefined): Omit<GrantEntry, 'actor'>[] {
  if (typeof resources === 'string' || Array.isArray(resources)) {
    const list: readonly unknown[] = typeof resources === 'string' ? [resources] : resources;
    return list.map((resource) => entry(resource, scopes));
  }
  if (typeof resources !== 'object' || resources === null) throw new TypeError('@Grant: expected a resource URL, a list or a map resource → scopes');
  if (scopes !== undefined) throw new TypeError('@Grant: give scopes inside the map, not as a second argument');
  return Object.entries(resources as Record<string, GrantScopes | undefined>).map(([resource, s]) => entry(resource, s));
}

function entry(resource: unknown, scopes: GrantScopes | undefined): Omit<GrantEntry, 'actor'> {
  if (typeof resource !== 'string' || !URL.canParse(resource)) throw new TypeError(`@Grant: ${JSON.stringify(resource)} is not an absolute URL`);
  const list = typeof scopes === 'string' ? scopes.split(' ').filter(Boolean) : (scopes ?? []);
  for (const scope of list) {
    if (typeof scope !== 'string' || !SCOPE_TOKEN.test(scope)) throw new TypeError(`@Grant: ${JSON.stringify(scope)} is not a valid scope`);
  }
  return { resource, scopes: Object.freeze([...list]) };
}
