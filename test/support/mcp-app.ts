/**
 * Nest MCP servers protected by the module, the two ways a Nest user builds one: @rekog/mcp-nest
 * (tools on an `@McpController`, the endpoint mounted behind the guard with `McpHttpControllerFor`,
 * or self-mounted as its quick start shows), and the MCP SDK's Streamable HTTP transport in a plain
 * controller marked `@McpEndpoint()`.
 */
import { Controller, Get, Module, Post, Req, Res, type INestApplication, type ModuleMetadata, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { McpController, McpHttpControllerFor, McpStrategy, StreamableHttpTransport, Tool } from '@rekog/mcp-nest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  Agent, KeycardModule, McpEndpoint, Public, RequireScopes, type AgentContext, type KeycardModuleOptions, type McpAuthInfo,
} from '../../lib/index.js';
import { SampleSdk2McpController } from '../../sample/mcp-sdk2.js';
import { CapturingLogger, type AdapterName } from './keycard-app.js';
import { sdkSessionController, type McpSessionLog } from './mcp-sdk-session.js';

export interface McpAppOptions {
  adapter: AdapterName;
  zoneUrl: string;
  /** Port to listen on (the resource is `http://127.0.0.1:<port>/mcp`). */
  port: number;
  /** `connectMicroservice(…, { inheritAppConfig })`. */
  inheritAppConfig?: boolean;
  /** `self`: mcp-nest's quick start (no controller claims the transport). @default 'controller' */
  mount?: 'controller' | 'self';
  /** More `@McpController()` classes with tools, beside the orders tools. */
  tools?: Type[];
  /** Module options instead of `zoneUrl` (e.g. `zones`); the resources stay {@link resourcesOf}. */
  keycard?: Omit<KeycardModuleOptions, 'logger' | 'resource'>;
  /** mcp-nest in stateful mode (sessions, SSE answers, the standalone `GET` stream). @default false */
  stateful?: boolean;
  /** Trust these zones instead of `zoneUrl` alone. */
  zones?: string[];
  /** @default the module's default */
  clockToleranceSeconds?: number;
  /** @default false */
  auditLog?: boolean;
  /** More modules for the app (e.g. `KeycardTelemetryModule`). */
  imports?: NonNullable<ModuleMetadata['imports']>;
  /** Shapes the app before it listens (middleware). */
  configure?: (app: INestApplication) => void;
  /** No `resource` configured (development mode, loopback only). @default false */
  developmentMode?: boolean;
  /** mcp-nest's cache hints for 2026-07-28 results (e.g. `{ 'tools/list': { cacheScope: 'public' } }`). */
  cacheHints?: ConstructorParameters<typeof McpStrategy>[0]['cacheHints'];
}

export interface RunningMcpApp {
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
  /** `extra.authInfo` of every call of the SDK-transport tool `sdk_whoami`, in order (`null`: a run of `sdk_purge`). */
  sdkAuthInfos: (McpAuthInfo | undefined | null)[];
  /** Tool runs (mcp-nest's `whoami` and the stateful SDK endpoint's tools) and closed responses of `/sdk-session`. */
  sessionLog: McpSessionLog;
  /** mcp-nest's strategy (its `registerTool()` adds tools at run time). */
  strategy: McpStrategy;
  close(): Promise<void>;
}

/** One resource per endpoint (catalogue Q17: a route is judged by the resource that covers it). */
export function resourcesOf(port: number): string[] {
  return ['mcp', 'sdk-mcp', 'sdk-session', 'sdk2-mcp', 'plain'].map((path) => `http://127.0.0.1:${port}/${path}`);
}

/** Text content of a tool result as JSON. */
export function toolJson(result: unknown): unknown {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return JSON.parse(content[0]?.text ?? 'null');
}

/** A tool result as the MCP SDK client returns it: its content, and whether the tool failed. */
export interface ToolResult {
  isError?: boolean;
  content?: { type: string; text?: string }[];
}

/** One `tools/call` of `name` with the MCP SDK client over Streamable HTTP to `url`, `token` as its bearer token; the client is closed afterwards. */
export async function callToolWithToken(url: string, token: string, name: string): Promise<ToolResult> {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  try {
    return (await client.callTool({ name, arguments: {} })) as ToolResult;
  } finally {
    await client.close();
  }
}

/**
 * A Nest app over loopback serving the mcp-nest server at /mcp, the stateless SDK-transport server
 * at /sdk-mcp and the stateful one at /sdk-session, and the sample's MCP SDK 2.x server at /sdk2-mcp.
 */
export async function startMcpApp(options: McpAppOptions): Promise<RunningMcpApp> {
  const logger = new CapturingLogger();
  const sdkAuthInfos: (McpAuthInfo | undefined | null)[] = [];
  const sessionLog: McpSessionLog = { runs: [], closed: [] };
  const transport = new StreamableHttpTransport({ statefulMode: options.stateful ?? false });
  const strategy = new McpStrategy({ name: 'orders-mcp', version: '1.0.0', transports: [transport], logging: false, cacheHints: options.cacheHints });

  @McpController()
  class OrderTools {
    @Tool({ name: 'whoami', description: 'Who is calling, for whom' })
    whoami(@Agent() agent: AgentContext) {
      sessionLog.runs.push(`whoami:${agent.subject}`);
      return { agent: agent.clientId, user: agent.subject, scopes: agent.scopes };
    }

    @Tool({ name: 'purge_orders', description: 'Deletes every order (admins only)' })
    @RequireScopes('admin')
    purge(@Agent('subject') subject: string) {
      return { purged: true, by: subject };
    }

    @Tool({ name: 'ping', description: 'Liveness, no token needed' })
    @Public()
    ping() {
      return { pong: true };
    }
  }

  const controllers: Type[] = [OrderTools, ...(options.tools ?? []), sdkMcpController(sdkAuthInfos), sdkSessionController('sdk-session', sessionLog), SampleSdk2McpController, PlainController];
  if (options.mount !== 'self') {
    @RequireScopes('mcp:tools')
    @Controller('mcp')
    class OrdersMcpHttp extends McpHttpControllerFor(transport) {}
    controllers.push(OrdersMcpHttp);
  }

  @Module({
    imports: [
      KeycardModule.forRoot({
        ...(options.keycard ?? (options.zones === undefined ? { zoneUrl: options.zoneUrl } : { zones: options.zones })),
        ...(options.developmentMode ? {} : { resource: resourcesOf(options.port) }),
        logger,
        auditLog: options.auditLog ?? false,
        ...(options.clockToleranceSeconds === undefined ? {} : { clockToleranceSeconds: options.clockToleranceSeconds }),
      }),
      ...(options.imports ?? []),
    ],
    controllers,
  })
  class AppModule {}

  const app = await NestFactory.create(AppModule, options.adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(), {
    logger: false,
    abortOnError: false,
  });
  try {
    options.configure?.(app);
    strategy.setHttpAdapter(app.getHttpAdapter());
    app.connectMicroservice({ strategy }, { inheritAppConfig: options.inheritAppConfig ?? false });
    await app.startAllMicroservices();
    await app.listen(options.port, '127.0.0.1');
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  return { app, url: `http://127.0.0.1:${options.port}`, logger, sdkAuthInfos, sessionLog, strategy, close: () => app.close() };
}

/**
 * The MCP SDK's own transport in a Nest controller (stateless, JSON answers), as its docs show; its
 * `sdk_purge` tool requires `admin` (`@McpEndpoint({ tools })`) and records its runs in `seen` as `null`.
 */
function sdkMcpController(seen: (McpAuthInfo | undefined | null)[]): Type {
  @McpEndpoint({ tools: { sdk_purge: ['admin'] } })
  @Controller('sdk-mcp')
  class SdkMcpController {
    @Post()
    async post(@Req() req: { raw?: IncomingMessage; body?: unknown }, @Res() res: { raw?: ServerResponse }) {
      const server = new McpServer({ name: 'sdk-mcp', version: '1.0.0' });
      server.registerTool('sdk_whoami', { description: 'What the tool receives' }, (extra) => {
        const info = extra.authInfo as McpAuthInfo | undefined;
        seen.push(info);
        const { subject, sessionId } = (info?.extra ?? {}) as { subject?: string; sessionId?: string };
        return { content: [{ type: 'text', text: JSON.stringify({ clientId: info?.clientId, subject, sessionId }) }] };
      });
      server.registerTool('sdk_purge', { description: 'Deletes everything (admins only)' }, () => {
        seen.push(null);
        return { content: [{ type: 'text', text: '{"purged":true}' }] };
      });
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      const nodeReq = (req.raw ?? req) as IncomingMessage;
      const nodeRes = (res.raw ?? res) as ServerResponse;
      nodeRes.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(nodeReq, nodeRes, req.body);
    }
  }
  return SdkMcpController;
}

/** An ordinary route beside the MCP ones: it must never see `req.auth` (the raw token). */
@Controller('plain')
class PlainController {
  @Get()
  plain(@Req() req: { auth?: unknown; raw?: { auth?: unknown } }) {
    return { hasAuth: req.auth !== undefined || req.raw?.auth !== undefined };
  }
}
