/**
 * `@Grant()` / `@Access()` on GraphQL resolvers (catalogue §V over GraphQL): the fields of one
 * operation share their HTTP request, and each gets the grant of its own resolver, exchanged from
 * the token the guard verified. Apollo on Express and Mercurius on Fastify, a real local zone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Field, Mutation, ObjectType, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { Access, type AccessContext, Grant } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak } from './support/contexts.js';
import { R } from './support/forge.js';
import { GRAPHQL_SERVERS, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';

const REPOS = 'https://repos.example.com';
const CRM = 'https://crm.example.com';
const SECRET = 'graphql-grants-secret';

/** What a resolver's access context holds: the resources, each granted or not, and the scopes of the tokens. */
function describeAccess(access: AccessContext): string {
  return access.resources.map((resource) => `${resource}=${access.has(resource) ? access.access(resource).scope : 'missing'}`).join(';');
}

@Resolver()
class UpstreamResolver {
  @Grant(REPOS, 'repo:read')
  @Query(() => String)
  repos(@Access() access: AccessContext): string {
    return describeAccess(access);
  }

  @Grant(CRM, 'contacts:read')
  @Query(() => String)
  contacts(@Access() access: AccessContext): string {
    return describeAccess(access);
  }

  @Grant(REPOS, 'repo:read')
  @Mutation(() => String)
  syncRepos(@Access() access: AccessContext): string {
    return describeAccess(access);
  }

  @Grant(CRM, 'contacts:read')
  @Mutation(() => String)
  syncContacts(@Access() access: AccessContext): string {
    return describeAccess(access);
  }
}

@ObjectType()
class Repo {
  @Field(() => String)
  name!: string;
}

/** A grant on a field resolver, resolved once per list item (fieldResolverEnhancers ['guards', 'interceptors']). */
@Resolver(() => Repo)
class RepoFieldsResolver {
  @Query(() => [Repo])
  repoList(): Repo[] {
    return [{ name: 'one' }, { name: 'two' }];
  }

  @Grant(CRM, 'contacts:read')
  @ResolveField(() => String)
  owner(@Access() access: AccessContext): string {
    return describeAccess(access);
  }
}

const SERVERS = GRAPHQL_SERVERS;

/** A zone that knows both upstream resources and the API's client, and a GraphQL app that may exchange with it. */
async function startGrantApp(server: (typeof SERVERS)[number][1], shape: Parameters<typeof startGraphQLApp>[2]) {
  const zone = await TestZone.start({
    audience: R,
    resources: { [REPOS]: ['repo:read'], [CRM]: ['contacts:read'] },
    clients: [{ clientId: 'agent-a', clientSecret: SECRET }],
  });
  try {
    const api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R, clientCredentials: { clientId: 'agent-a', clientSecret: SECRET } }, shape);
    return { zone, api };
  } catch (error) {
    await zone.stop(); // the suite's afterAll never sees a zone it was not handed
    throw error;
  }
}

describe.each(SERVERS)('@Grant() on GraphQL resolvers: %s', (_name, server) => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    ({ zone, api } = await startGrantApp(server, { providers: [UpstreamResolver] }));
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  const gql = (query: string, token: string) => postGraphQL(api.url, query, token);

  it('V1 two fields of one operation, each with its own @Grant(): each gets its own resource, exchanged once each', async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await gql('{ repos contacts again: repos }', token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { repos: `${REPOS}=repo:read`, contacts: `${CRM}=contacts:read`, again: `${REPOS}=repo:read` } });
    expect(zone.tokenRequests.map((r) => r.form.resource).sort()).toEqual([CRM, REPOS]);
    expectNoLeak(res.body, [token], api.logger.lines);
  });

  it('V1 mutations run one after the other: the second never reuses the first one\'s grant', async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await gql('mutation { syncRepos syncContacts }', token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { syncRepos: `${REPOS}=repo:read`, syncContacts: `${CRM}=contacts:read` } });
    expectNoLeak(res.body, [token], api.logger.lines);
  });
});

describe.each(SERVERS)('@Grant() on a GraphQL field resolver (fieldResolverEnhancers: guards, interceptors): %s', (_name, server) => {
  let zone: TestZone;
  let api: RunningGraphQLApp;

  beforeAll(async () => {
    ({ zone, api } = await startGrantApp(server, { providers: [RepoFieldsResolver], graphql: { fieldResolverEnhancers: ['guards', 'interceptors'] } }));
  });
  afterAll(async () => {
    await api?.close();
    await zone?.stop();
  });

  it('V1 each list item\'s field gets its grant; the exchange is made once (cache)', async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await postGraphQL(api.url, '{ repoList { name owner } }', token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { repoList: [{ name: 'one', owner: `${CRM}=contacts:read` }, { name: 'two', owner: `${CRM}=contacts:read` }] } });
    expect(zone.tokenRequests.map((r) => r.form.resource)).toEqual([CRM]);
    expectNoLeak(res.body, [token], api.logger.lines);
  });
});
