/**
 * Federation reference resolvers (`@ResolveReference()`) behind the Keycard guard, on a real Apollo
 * subgraph over loopback. graphql-js calls them with (reference, context, info) — three arguments,
 * not four — so the guard must find the request in the second one, as `GqlExecutionContext` does.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { ApolloFederationDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { Directive, Field, GraphQLModule, ID, ObjectType, Query, ResolveReference, Resolver } from '@nestjs/graphql';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Public, RequireScopes } from '../lib/index.js';
import { KeycardModule } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectFixedDescription, expectNoLeak, forged } from './support/contexts.js';
import { PRM, R } from './support/forge.js';
import { postGraphQL } from './support/graphql-app.js';
import { CapturingLogger } from './support/keycard-app.js';

@ObjectType()
@Directive('@key(fields: "id")')
class Account {
  @Field(() => ID)
  id!: string;
  @Field(() => String)
  owner!: string;
}

@ObjectType()
@Directive('@key(fields: "id")')
class Product {
  @Field(() => ID)
  id!: string;
  @Field(() => String)
  title!: string;
}

@Resolver(() => Account)
class AccountsResolver {
  @RequireScopes('accounts:read')
  @Query(() => Account)
  account(): Account {
    return { id: 'a-0', owner: 'OWNER-OF-a-0' };
  }

  @RequireScopes('accounts:read')
  @ResolveReference()
  resolveReference(reference: { id: string }): Account {
    return { id: reference.id, owner: `OWNER-OF-${reference.id}` };
  }
}

@Resolver(() => Product)
class ProductsResolver {
  @Public()
  @Query(() => Product)
  product(): Product {
    return { id: 'p-0', title: 'TITLE-p-0' };
  }

  @Public()
  @ResolveReference()
  resolveReference(reference: { id: string }): Product {
    return { id: reference.id, title: `TITLE-${reference.id}` };
  }
}

const ACCOUNT = '{ _entities(representations: [{ __typename: "Account", id: "a-1" }]) { ... on Account { id owner } } }';
const PRODUCT = '{ _entities(representations: [{ __typename: "Product", id: "p-1" }]) { ... on Product { id title } } }';

describe('GraphQL federation: @ResolveReference() on an Apollo subgraph', () => {
  let zone: TestZone;
  let app: INestApplication;
  let url: string;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
    @Module({
      imports: [
        KeycardModule.forRoot({ zoneUrl: zone.issuer, resource: R, logger }),
        GraphQLModule.forRoot<ApolloDriverConfig>({
          driver: ApolloFederationDriver,
          autoSchemaFile: { federation: 2 },
          fieldResolverEnhancers: ['guards'],
          // A subgraph traces inline by default and says so with console.info on every start.
          plugins: [ApolloServerPluginInlineTraceDisabled()],
        }),
      ],
      providers: [AccountsResolver, ProductsResolver],
    })
    class SubgraphModule {}
    app = await NestFactory.create(SubgraphModule, new ExpressAdapter(), { logger: false, abortOnError: false });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/graphql`;
  });
  afterAll(async () => {
    await app?.close();
    await zone?.stop();
  });

  const gql = (query: string, token?: string) => postGraphQL(url, query, token);

  it('N3 a token with the scope → the reference resolver runs (the request is found in its second argument)', async () => {
    const res = await gql(ACCOUNT, zone.issueToken({ scope: 'accounts:read' }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { _entities: [{ id: 'a-1', owner: 'OWNER-OF-a-1' }] } });
  });

  it('N3 a token without the scope → FORBIDDEN insufficient_scope naming it, challenge on the response, nothing leaked', async () => {
    const token = zone.issueToken({ scope: 'profile' });
    const res = await gql(ACCOUNT, token);
    expect(res.challenge).toMatchObject({ scheme: 'Bearer', params: { error: 'insufficient_scope', scope: 'accounts:read', resource_metadata: PRM } });
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'accounts:read' });
    expectFixedDescription(res.body.errors![0].message);
    expect(res.text.includes('OWNER-OF')).toBe(false);
    expectNoLeak(res.body, [token], logger.lines);
  });

  it('N1 no token, or a forged one → UNAUTHENTICATED with the 401 challenge, nothing leaked', async () => {
    const anonymous = await gql(ACCOUNT);
    expect(anonymous.challenge?.params).toMatchObject({ resource_metadata: PRM, scope: 'accounts:read' });
    expect(anonymous.body.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED', scope: 'accounts:read' });
    const token = forged(zone.issueToken({ scope: 'accounts:read' }));
    const res = await gql(ACCOUNT, token);
    expect(res.challenge?.params).toMatchObject({ error: 'invalid_token', scope: 'accounts:read' });
    expect(res.body.errors?.[0].extensions).toMatchObject({ code: 'UNAUTHENTICATED', error: 'invalid_token' });
    expect(res.text.includes('OWNER-OF')).toBe(false);
    expectNoLeak(res.body, [token], logger.lines);
  });

  it('N2 a @Public() reference resolver without a token → served', async () => {
    const res = await gql(PRODUCT);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { _entities: [{ id: 'p-1', title: 'TITLE-p-1' }] } });
  });

  it('Q16 one _entities field with a public and a protected entity, no token: the public one is served, HTTP 200 (part of the operation ran)', async () => {
    const res = await gql(
      '{ _entities(representations: [{ __typename: "Product", id: "p-2" }, { __typename: "Account", id: "a-2" }]) { ... on Product { id title } ... on Account { id owner } } }',
    );
    expect(res.status).toBe(200);
    expect((res.body.data as { _entities: unknown[] })._entities).toEqual([{ id: 'p-2', title: 'TITLE-p-2' }, null]);
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors![0].extensions).toMatchObject({ code: 'UNAUTHENTICATED', scope: 'accounts:read' });
    expect(res.challenge?.params).toMatchObject({ resource_metadata: PRM, scope: 'accounts:read' });
    expect(res.text.includes('OWNER-OF')).toBe(false);
  });

  it('N10 the denial names the reference resolver, never the token', async () => {
    const token = zone.issueToken({ scope: 'profile' });
    await gql(ACCOUNT, token);
    expect(logger.lines.some((line) => line.startsWith('denied graphql query anonymous._entities') && line.includes('reason=insufficient_scope'))).toBe(true);
    expect(logger.lines.some((line) => line.includes(token))).toBe(false);
  });
});
