/**
 * GraphQL field resolvers (`@ResolveField()`) behind the Keycard guard: Nest runs guards on them only
 * with `fieldResolverEnhancers: ['guards']`. With it, they are judged like root fields (Q16); without
 * it, a scope declared on one fails the bootstrap rather than going unenforced, and undecorated ones
 * are named in a warning. Apollo on Express and Mercurius on Fastify, queried with `fetch` over loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Field, ObjectType, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import {
  Access, type AccessContext, Grant, Public, RequireActors, RequireAuthentication, RequireClaims, RequireFreshness, RequireScopes,
} from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { PRM, R } from './support/forge.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp, type GraphQLAnswer, type RunningGraphQLApp } from './support/graphql-app.js';

@ObjectType()
class Stats {
  @Field(() => String)
  name!: string;
}

@ObjectType()
class Account {
  @Field(() => String)
  id!: string;
}

/** A public query whose type has a scoped field resolver and an undecorated one. */
@Resolver(() => Stats)
class StatsResolver {
  @Public()
  @Query(() => Stats)
  stats(): Stats {
    return { name: 'shop' };
  }

  @RequireScopes('stats:admin')
  @ResolveField(() => String)
  revenue(@Parent() stats: Stats): string {
    return `REVENUE-OF-${stats.name}`;
  }

  @ResolveField(() => String)
  visitors(): string {
    return 'VISITORS-42';
  }

  @Public()
  @ResolveField(() => String)
  motto(): string {
    return 'open to all';
  }
}

/** Scopes declared on the class reach its field resolvers too. */
@RequireScopes('accounts:read')
@Resolver(() => Account)
class AccountsResolver {
  @Query(() => Account)
  account(): Account {
    return { id: 'acc-1' };
  }

  @ResolveField(() => String)
  balance(): string {
    return 'BALANCE-100';
  }
}

/** Only an undecorated field resolver: the bootstrap succeeds with a warning when guards are off. */
@Resolver(() => Stats)
class UndecoratedFieldResolver {
  @Public()
  @Query(() => Stats)
  stats(): Stats {
    return { name: 'shop' };
  }

  @ResolveField(() => String)
  visitors(): string {
    return 'VISITORS-42';
  }
}

/** A field resolver with a grant: its interceptor runs only with fieldResolverEnhancers ['interceptors']. */
@Resolver(() => Stats)
class GrantedFieldResolver {
  @Public()
  @Query(() => Stats)
  stats(): Stats {
    return { name: 'shop' };
  }

  @Grant('https://repos.example.com', 'repo:read')
  @ResolveField(() => String)
  upstream(@Access() access: AccessContext): string {
    return access.status;
  }
}

/**
 * One field resolver per policy decorator other than plain @RequireScopes: each declares a rule that
 * no guard would judge on a field resolver when guards do not run there.
 */
function policyFieldResolver(name: string, decorator: MethodDecorator) {
  @Resolver(() => Stats)
  class PolicyFieldResolver {
    @Public()
    @Query(() => Stats)
    stats(): Stats {
      return { name: 'shop' };
    }

    @ResolveField(() => String)
    secret(): string {
      return `LEAK-${name}`;
    }
  }
  const descriptor = Object.getOwnPropertyDescriptor(PolicyFieldResolver.prototype, 'secret')!;
  decorator(PolicyFieldResolver.prototype, 'secret', descriptor);
  Object.defineProperty(PolicyFieldResolver, 'name', { value: `${name}FieldResolver` });
  return PolicyFieldResolver;
}

const POLICY_FIELD_RESOLVERS: [string, MethodDecorator][] = [
  ['FromArguments', RequireScopes.fromArguments(() => ['stats:admin'])],
  ['AnyOf', RequireScopes.anyOf(['stats:admin'], ['stats:owner'])],
  ['Claims', RequireClaims({ tenant: { equals: 'acme' } })],
  ['StepUp', RequireAuthentication({ acr: ['urn:kc:mfa'] })],
  ['Actors', RequireActors({ maxDepth: 0 })],
  ['Freshness', RequireFreshness()],
];

const SERVERS = GRAPHQL_SERVERS;

describe.each(SERVERS)('GraphQL field resolvers with fieldResolverEnhancers: [guards]: %s', (_name, server) => {
  // Row ID prefix: N3 for Apollo, N4 (the same cases) for Mercurius.
  const row = (id: string) => (server === 'apollo' ? id : `N4 (${id})`);
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    api = await startGraphQLApp(
      server,
      { zoneUrl: zone.issuer, resource: R },
      { providers: [StatsResolver, AccountsResolver], graphql: { fieldResolverEnhancers: ['guards'] } },
    );
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const gql = (query: string, token?: string) => postGraphQL(api.url, query, token);

  /** The one error of `field`: code, OAuth error, scope, fixed description; the field's data never sent. */
  function expectFieldRefused(res: GraphQLAnswer, field: string, code: string, error: string | undefined, scope: string | undefined, never: string) {
    const errors = res.body.errors ?? [];
    expect(errors.map((e) => e.path?.at(-1))).toEqual([field]);
    expect(errors[0].extensions).toMatchObject({ code, ...(error ? { error } : {}), ...(scope ? { scope } : {}) });
    expect(errors[0].extensions?.error).toBe(error);
    expectFixedDescription(errors[0].message);
    expect(res.text.includes(never)).toBe(false);
  }

  it(`${row('N3')} a scoped field resolver under a @Public() query, no token → UNAUTHENTICATED naming its scope; the public parts are served (HTTP 200)`, async () => {
    const res = await gql('{ stats { name motto revenue } }');
    expect(res.status).toBe(200);
    expectFieldRefused(res, 'revenue', 'UNAUTHENTICATED', undefined, 'stats:admin', 'REVENUE-OF');
    expect(res.challenge).toMatchObject({ scheme: 'Bearer', params: { resource_metadata: PRM, scope: 'stats:admin' } });
    expectNoLeak(res.body, [], api.logger.lines);
  });

  it(`${row('N3')} the same field with a token lacking the scope → FORBIDDEN insufficient_scope naming stats:admin, nothing leaked`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await gql('{ stats { revenue } }', token);
    expectFieldRefused(res, 'revenue', 'FORBIDDEN', 'insufficient_scope', 'stats:admin', 'REVENUE-OF');
    expect(res.challenge?.params).toMatchObject({ error: 'insufficient_scope', scope: 'stats:admin' });
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N3')} a forged token on the field → UNAUTHENTICATED invalid_token, nothing leaked`, async () => {
    const token = forged(zone.issueToken({ scope: 'stats:admin' }));
    const res = await gql('{ stats { revenue } }', token);
    expectFieldRefused(res, 'revenue', 'UNAUTHENTICATED', 'invalid_token', 'stats:admin', 'REVENUE-OF');
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N3')} a token with the scope → the field resolver runs`, async () => {
    const res = await gql('{ stats { name revenue } }', zone.issueToken({ scope: 'stats:admin' }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { stats: { name: 'shop', revenue: 'REVENUE-OF-shop' } } });
  });

  it(`${row('N3')} a token new to the module: the undecorated field resolver admitted, the scoped one after it refused (a non-null field: data null) and logged once (not 0 times)`, async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const before = api.logger.lines.length;
    const res = await gql('{ stats { visitors revenue } }', token);
    expect(res.status).toBe(200);
    expectFieldRefused(res, 'revenue', 'FORBIDDEN', 'insufficient_scope', 'stats:admin', 'REVENUE-OF');
    expect(api.logger.lines.slice(before).filter((l) => l.startsWith('denied '))).toHaveLength(1);
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it(`${row('N3')} an undecorated field resolver is protected by default: anonymous → UNAUTHENTICATED; any valid token → served`, async () => {
    const anonymous = await gql('{ stats { visitors } }');
    expectFieldRefused(anonymous, 'visitors', 'UNAUTHENTICATED', undefined, undefined, 'VISITORS-42');
    const served = await gql('{ stats { visitors } }', zone.issueToken({ scope: 'profile' }));
    expect(served.body).toEqual({ data: { stats: { visitors: 'VISITORS-42' } } });
  });

  it(`${row('N3')} class-level @RequireScopes reaches the class field resolvers`, async () => {
    const token = zone.issueToken({ scope: 'accounts:read' });
    expect((await gql('{ account { id balance } }', token)).body).toEqual({ data: { account: { id: 'acc-1', balance: 'BALANCE-100' } } });
    const lacking = zone.issueToken({ scope: 'profile' });
    const res = await gql('{ account { id balance } }', lacking);
    expect(res.status).toBe(403);
    expect(res.text.includes('BALANCE-100')).toBe(false);
    expectNoLeak(res.body, [lacking], api.logger.lines);
  });
});

describe.each(SERVERS)('GraphQL field resolvers without fieldResolverEnhancers: [guards]: %s', (_name, server) => {
  let zone: TestZone;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(() => zone?.stop());

  it('a @RequireScopes() field resolver (method or class level) fails the bootstrap, naming it and the option, instead of going unenforced', async () => {
    const failure = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { providers: [StatsResolver, AccountsResolver] }).then(
      async (api) => {
        await api.close();
        return undefined;
      },
      (error: unknown) => error as Error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(failure!.message).toContain("fieldResolverEnhancers: ['guards']");
    expect(failure!.message).toContain('StatsResolver.revenue (stats:admin)');
    expect(failure!.message).toContain('AccountsResolver.balance (accounts:read)');
    expect(failure!.message).not.toContain('motto');
  });

  it.each(POLICY_FIELD_RESOLVERS)('every requirement decorator on a field resolver fails the bootstrap too (%s), never served to anonymous callers', async (name, decorator) => {
    const options = { zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'api', clientSecret: 'api-secret' } }; // @RequireFreshness needs them
    const failure = await startGraphQLApp(server, options, { providers: [policyFieldResolver(name, decorator)] }).then(
      async (api) => {
        const leaked = await postGraphQL(api.url, '{ stats { name secret } }');
        await api.close();
        return new Error(`booted and answered ${JSON.stringify(leaked.body)}`);
      },
      (error: unknown) => error as Error,
    );
    expect(failure.message).toContain("fieldResolverEnhancers: ['guards']");
    expect(failure.message).toContain(`${name}FieldResolver.secret`);
    expect(failure.message).not.toContain('LEAK');
  });

  it('V1 a @Grant() on a field resolver fails the bootstrap unless interceptors run there too, naming it and the option', async () => {
    for (const graphql of [{}, { fieldResolverEnhancers: ['guards'] }]) {
      const failure = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { providers: [GrantedFieldResolver], graphql }).then(
        async (api) => {
          await api.close();
          return undefined;
        },
        (error: unknown) => error as Error,
      );
      expect(failure).toBeInstanceOf(Error);
      expect(failure!.message).toContain("fieldResolverEnhancers: ['guards', 'interceptors']");
      expect(failure!.message).toContain('GrantedFieldResolver.upstream');
    }
    const api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, {
      providers: [GrantedFieldResolver],
      graphql: { fieldResolverEnhancers: ['guards', 'interceptors'] },
    });
    await api.close();
  });

  it('undecorated field resolvers boot with one warning naming them (they are only as protected as the query reaching them)', async () => {
    const api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { providers: [UndecoratedFieldResolver] });
    try {
      const warnings = api.logger.lines.filter((line) => line.includes('field resolvers run without the Keycard guard'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('UndecoratedFieldResolver.visitors');
      expect(warnings[0]).toContain("fieldResolverEnhancers: ['guards']");
    } finally {
      await api.close();
    }
  });
});
