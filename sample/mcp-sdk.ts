import { Controller, Post, Req, Res } from '@nestjs/common';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { McpEndpoint, RequireScopes, type McpAuthInfo } from '../lib/index.js';

/** Express hands Nest the Node request itself; Fastify wraps it (`raw`). */
type NestRequest = { raw?: IncomingMessage; body?: unknown };
type NestResponse = { raw?: ServerResponse };

/**
 * The sample's MCP server built with the MCP SDK's own `McpServer` and Streamable HTTP transport
 * (stateless: a server per request, JSON answers), in a controller marked `@McpEndpoint()`: the
 * other MCP shape the module protects, beside mcp-nest's (`sample/mcp.ts`). Tools read the caller
 * from `extra.authInfo`.
 */
@McpEndpoint()
@RequireScopes('read')
@Controller('sdk-mcp')
export class SampleSdkMcpController {
  @Post()
  async post(@Req() req: NestRequest, @Res() res: NestResponse): Promise<void> {
    const server = sdkServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const nodeRes = (res.raw ?? res) as ServerResponse;
    nodeRes.on('close', () => void transport.close().finally(() => server.close()));
    await server.connect(transport);
    await transport.handleRequest((req.raw ?? req) as IncomingMessage, nodeRes, req.body);
  }
}

function sdkServer(): McpServer {
  const server = new McpServer({ name: 'nestjs-keycard-sample-sdk', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Which agent is calling, for which user, with which scopes' }, (extra) => {
    const info = extra.authInfo as McpAuthInfo | undefined;
    const who = { agent: info?.clientId, user: info?.extra.subject, scopes: info?.scopes };
    return { content: [{ type: 'text', text: JSON.stringify(who) }] };
  });
  return server;
}
