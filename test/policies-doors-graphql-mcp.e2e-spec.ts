/**
 * An attack trial of the policies on graphql-ws subscriptions (Apollo and Mercurius) and MCP
 * `tools/call` (mcp-nest): arguments the client controls, step-up, claims, delegation chains and
 * optional authentication, each judged where the door delivers them. Real servers and clients on
 * loopback, a real TestZone.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Args, Int, Query, Resolver, Subscription } from '@nestjs/graphql';
import { McpController, Tool } from '@rekog/mcp-nest';
import { z } from 'zod';
import { Agent, OptionalAuth, RequireActors, RequireAuthentication, RequireClaims, RequireScopes, type AgentContext } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectNoLeak, forged, issuedTokens } from './support/contexts.js';
import { expectOutcome } from './support/denials.js';
import { R } from './support/forge.js';
import { freePort } from './support/free-port.js';
import { GRAPHQL_SERVERS, firstGraphQLWsResult, postGraphQL, startGraphQLApp, type RunningGraphQLApp } from './support/graphql-app.js';
import { send } from './support/http.js';
import { startMcpApp, type RunningMcpApp } from './support/mcp-app.js';

const PERMISSION = 'The access token lacks a required permission';
const STEP_UP = 'A stronger or more recent user authentication is required';

async function* once<T>(value: T): AsyncGenerator<T> {
  yield value;
}

@Resolver()
class PushResolver {
  @RequireScopes.fromArguments((args: { visibility?: unknown }) => (args.visibility === 'public' ? ['repo:read'] : ['repo:private']))
  @Subscription(() => String)
  repoPushes(@Args('visibility') visibility: string) { return once({ repoPushes: visibility }); }

  @RequireAuthentication({ acr: ['urn:kc:mfa'], maxAge: 300 })
  @Subscription(() => Int)
  strongPushes() { return once({ strongPushes: 1 }); }

  @RequireClaims({ roles: { includes: 'admin' } })
  @Subscription(() => Int)
  adminPushes() { return once({ adminPushes: 1 }); }

  @OptionalAuth()
  @Subscription(() => String)
  greetPushes(@Agent() agent?: AgentContext) { return once({ greetPushes: agent?.clientId ?? 'anonymous' }); }

  @OptionalAuth()
  @Query(() => String)
  greet(@Agent() agent?: AgentContext) { return agent?.clientId ?? 'anonymous'; }
}

type GraphQLError = { message: string; extensions?: Record<string, unknown> };

describe('policies on graphql-ws and MCP (an attack trial)', () => {
  let zone: TestZone;
  const { token, signatures } = issuedTokens(() => zone);

  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterAll(async () => {
    await zone?.stop();
  });

  describe.each(GRAPHQL_SERVERS)('graphql-ws subscriptions, %s', (_name, server) => {
    let api: RunningGraphQLApp;
    /** The first result, or the errors a server sends instead (Apollo as a result, Mercurius as the subscription's error). */
    const subscribe = (connectionParams: Record<string, unknown>, query: string): Promise<{ data?: unknown; errors?: GraphQLError[] }> =>
      firstGraphQLWsResult(api.wsUrl, connectionParams, query).then(
        (body) => body as { data?: unknown; errors?: GraphQLError[] },
        (error: Error) => ({ errors: JSON.parse(error.message.replace(/^graphql-ws: /, '')) as GraphQLError[] }),
      );
    beforeAll(async () => {
      const hooks = server === 'apollo' ? { graphqlWs: [undefined, { allowAnonymous: true }] } : { mercuriusSubscription: [undefined, { allowAnonymous: true }] };
      api = await startGraphQLApp(server, { zoneUrl: zone.issuer, resource: R }, { providers: [PushResolver], ...hooks } as never);
    });
    afterAll(async () => {
      expectNoLeak(api?.logger.lines ?? [], signatures(), api?.logger.lines ?? []);
      await api?.close();
    });

    it('T12 a subscription is judged on its coerced arguments: public served, private FORBIDDEN naming repo:private', async () => {
      const read = token({ scope: 'repo:read' });
      expect(await subscribe({ token: read }, 'subscription { repoPushes(visibility: "public") }')).toEqual({ data: { repoPushes: 'public' } });
      const refused = await subscribe({ token: read }, 'subscription { repoPushes(visibility: "private") }');
      expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', error: 'insufficient_scope', scope: 'repo:private' });
    });

    it('T24 step-up on a subscription: UNAUTHENTICATED with insufficient_user_authentication, acr_values and max_age', async () => {
      const refused = await subscribe({ token: token({ acr: 'urn:kc:pwd', auth_time: 1 }) }, 'subscription { strongPushes }');
      expect(refused.errors?.[0]).toMatchObject({
        message: STEP_UP,
        extensions: { code: 'UNAUTHENTICATED', error: 'insufficient_user_authentication', error_description: STEP_UP, acr_values: 'urn:kc:mfa', max_age: '300' },
      });
    });

    it('T18 a claim on a subscription: FORBIDDEN without scope; a string claim does not include itself', async () => {
      const refused = await subscribe({ token: token({ roles: 'admin' }) }, 'subscription { adminPushes }');
      expect(refused.errors?.[0]?.extensions).toEqual({ code: 'FORBIDDEN', error: 'insufficient_scope', error_description: PERMISSION });
    });

    it('T14 @OptionalAuth() over GraphQL: anonymous, an agent, a forged token 401 over HTTP; over graphql-ws a token is served and a forged one refused at connection_init', async () => {
      expect((await postGraphQL(api.url, '{ greet }')).body).toEqual({ data: { greet: 'anonymous' } });
      expect((await postGraphQL(api.url, '{ greet }', token({}))).body).toEqual({ data: { greet: 'agent-t' } });
      const bad = await postGraphQL(api.url, '{ greet }', forged(token({})));
      expect({ status: bad.status, error: bad.challenge?.params.error, code: bad.body.errors?.[0]?.extensions?.code }).toEqual({ status: 401, error: 'invalid_token', code: 'UNAUTHENTICATED' });
      expect(await subscribe({ token: token({}) }, 'subscription { greetPushes }')).toEqual({ data: { greetPushes: 'agent-t' } });
      await expect(firstGraphQLWsResult(api.wsUrl, { token: forged(token({})) }, 'subscription { greetPushes }')).rejects.toThrow('graphql-ws');
    });

    it('T14 @OptionalAuth() on a subscription of a connection opened without a token (allowAnonymous): served anonymously (Q26); a required-scope one still refused', async () => {
      expect(await subscribe({}, 'subscription { greetPushes }')).toEqual({ data: { greetPushes: 'anonymous' } });
      const refused = await subscribe({}, 'subscription { adminPushes }');
      expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'UNAUTHENTICATED', error_description: 'Authentication is required' });
    });
  });

  describe('MCP tools/call (mcp-nest, stateless)', () => {
    let api: RunningMcpApp;
    let prm: string;
    const runs: string[] = [];

    @McpController()
    class RepoTools {
      @Tool({ name: 'get_repo', description: 'Reads a repository', parameters: z.object({ visibility: z.string() }) })
      @RequireScopes.fromArguments((args: { visibility?: unknown }) => (args.visibility === 'public' ? ['repo:read'] : ['repo:private']))
      getRepo(args: { visibility: string }) {
        runs.push(`get_repo:${args.visibility}`);
        return { repo: args.visibility };
      }

      @Tool({ name: 'admin_only', description: 'Needs the admin role' })
      @RequireClaims({ roles: { includes: 'admin' } })
      adminOnly() {
        runs.push('admin_only');
        return { ok: true };
      }

      @Tool({ name: 'delegated', description: 'Bounded delegation' })
      @RequireActors({ maxDepth: 1, allowed: ['agent-b'] })
      delegated() {
        runs.push('delegated');
        return { ok: true };
      }
    }

    const post = (body: string, t: string) =>
      send(api.url, 'POST', '/mcp', [
        ['Content-Type', 'application/json'],
        ['Accept', 'application/json, text/event-stream'],
        ['MCP-Protocol-Version', '2025-06-18'],
        ['Authorization', `Bearer ${t}`],
      ], body);
    const call = (name: string, args: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } });
    const mcpToken = (scope: string, claims: Record<string, unknown> = {}) => token({ aud: `${api.url}/mcp`, scope, ...claims });

    beforeAll(async () => {
      const port = await freePort();
      api = await startMcpApp({ adapter: 'express', zoneUrl: zone.issuer, port, tools: [RepoTools] });
      prm = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
    });
    afterAll(async () => {
      expectNoLeak(api?.logger.lines ?? [], signatures(), api?.logger.lines ?? []);
      await api?.close();
    });

    it('T10 the parsed body decides for the guard and the SDK alike: a duplicated argument, arguments or tool name are judged as the SDK reads them', async () => {
      const t = mcpToken('mcp:tools repo:read');
      runs.length = 0;
      // JSON.parse keeps the last of duplicated keys, for the guard and the SDK alike.
      const publicLast = await post('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_repo","arguments":{"visibility":"private","visibility":"public"}}}', t);
      expect(publicLast.status).toBe(200);
      expect(runs).toEqual(['get_repo:public']);
      for (const body of [
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_repo","arguments":{"visibility":"public"},"arguments":{"visibility":"private"}}}',
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_only","name":"get_repo","arguments":{"visibility":"private"}}}',
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_repo","arguments":{"visibility":"priv\\u0061te"}}}',
      ]) {
        expectOutcome(await post(body, t), '403:mcp:tools repo:private', prm, [t], api.logger.lines);
      }
      expect(runs).toEqual(['get_repo:public']);
    });

    it('T10 a JSON-RPC batch is judged per tool in mcp-nest\'s pipeline: the private call is a tool error naming repo:private, the tool never runs', async () => {
      runs.length = 0;
      const t = mcpToken('mcp:tools repo:read');
      const res = await post(`[${call('get_repo', { visibility: 'private' })}]`, t);
      expect(res.text).toContain('insufficient_scope: this tool requires scope \\"repo:private\\"');
      expect(res.text).toContain('"isError":true');
      expect(runs).toEqual([]);
    });

    it('T18 T29 a claim or the act chain on a tool: one HTTP 403 insufficient_scope without scope, before the tool runs', async () => {
      runs.length = 0;
      for (const [tool, claims] of [['admin_only', { roles: ['user'] }], ['delegated', { act: { sub: 'agent-z' } }], ['delegated', { act: { sub: 'agent-b', act: { sub: 'agent-c' } } }]] as const) {
        const res = await post(call(tool, {}), mcpToken('mcp:tools', claims));
        expect(res.status).toBe(403);
        expect(res.headers['www-authenticate']).toBe(`Bearer error="insufficient_scope", error_description="${PERMISSION}", resource_metadata="${prm}"`);
      }
      expect(runs).toEqual([]);
    });
  });
});
