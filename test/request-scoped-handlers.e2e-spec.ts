/**
 * Request-scoped resolvers whose methods are bound in the constructor (`this.box =
 * this.box.bind(this)`): Nest's GraphQL explorer registers each request's `instance[method]`, a
 * bound function made after the module started. Each must be judged by the rules of the method it
 * binds, root query and `@ResolveField()` alike (with `fieldResolverEnhancers: ['guards']`), never
 * refused as an unknown handler. (HTTP: test/apm-instrument.e2e-spec.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Inject } from '@nestjs/common';
import { CONTEXT, Field, ObjectType, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { R } from './support/forge.js';
import { startGraphQLApp, type GraphQLServer, type RunningGraphQLApp } from './support/graphql-app.js';

@ObjectType()
class Box {
  @Field()
  id!: string;
}

// Request-scoped: it injects the request's CONTEXT (Nest makes the resolver request-scoped for it).
@Resolver(() => Box)
class BoundBoxResolver {
  constructor(@Inject(CONTEXT) readonly context: unknown) {
    this.box = this.box.bind(this);
    this.secret = this.secret.bind(this);
  }

  @RequireScopes('box:read')
  @Query(() => Box)
  box(): Box {
    return { id: 'b1' };
  }

  @RequireScopes('box:secret')
  @ResolveField(() => String)
  secret(@Parent() box: Box): string {
    return `s-${box.id}`;
  }
}

describe.each<GraphQLServer>(['apollo', 'mercurius'])('a request-scoped resolver binding its methods, on %s', (server) => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { providers: [BoundBoxResolver], graphql: { fieldResolverEnhancers: ['guards'] } });
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const ask = async (query: string, token: string) => {
    const res = await fetch(api.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
    const text = await res.text();
    expect(text).not.toContain(token);
    return { status: res.status, body: JSON.parse(text) as { data?: unknown; errors?: { path?: string[]; extensions?: { error?: string } }[] } };
  };

  it('root field and @ResolveField judged by their own methods\' rules: served with the scopes, insufficient_scope without; never "Forbidden resource", nothing leaked', async () => {
    const reader = zone.issueToken({ scope: 'box:read' });
    const both = zone.issueToken({ scope: 'box:read box:secret' });
    const none = zone.issueToken({ scope: 'profile' });
    expect(await ask('{ box { id } }', reader)).toEqual({ status: 200, body: { data: { box: { id: 'b1' } } } });
    expect(await ask('{ box { id secret } }', both)).toEqual({ status: 200, body: { data: { box: { id: 'b1', secret: 's-b1' } } } });
    const fieldRefused = await ask('{ box { id secret } }', reader);
    expect(fieldRefused.body.errors?.map((e) => [e.path, e.extensions?.error])).toEqual([[['box', 'secret'], 'insufficient_scope']]);
    const rootRefused = await ask('{ box { id } }', none);
    expect(rootRefused.status).toBe(403);
    expect(rootRefused.body.errors?.map((e) => [e.path, e.extensions?.error])).toEqual([[['box'], 'insufficient_scope']]);
    const logs = api.logger.lines.join('\n');
    expect(logs).not.toContain('was not a method of the app');
    for (const token of [reader, both, none]) expect(logs).not.toContain(token);
  });
});
