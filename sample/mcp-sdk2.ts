import { All, Controller, Req, Res } from '@nestjs/common';
import { toNodeHandler, type NodeIncomingMessageLike, type NodeServerResponseLike } from '@modelcontextprotocol/node';
import { createMcpHandler, McpServer, ResourceTemplate, type McpHttpHandler } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { McpEndpoint, RequireScopes, type McpAuthInfo } from '../lib/index.js';

/** Express hands Nest the Node request itself; Fastify wraps it (`raw`). */
type NestRequest = { raw?: NodeIncomingMessageLike; body?: unknown };
type NestResponse = { raw?: NodeServerResponseLike };

/**
 * The MCP SDK 2.x server (`@modelcontextprotocol/server`, revision 2026-07-28 and the 2025 revisions
 * statelessly) behind the Keycard guard in an `@McpEndpoint()` controller: the SDK's own
 * `createMcpHandler`, adapted to Node by `@modelcontextprotocol/node`, handed the guarded request.
 * The guard puts the verified caller on `req.auth`, which the adapter passes to tools as
 * `ctx.authInfo`. `repo_info` mirrors its `repo` argument in an `Mcp-Param-Repo` header
 * (SEP-2243 `x-mcp-header`), which the SDK checks against the body.
 */
@McpEndpoint({ tools: { purge_repo: ['admin'] } })
@RequireScopes('read')
@Controller('sdk2-mcp')
export class SampleSdk2McpController {
  private readonly handle = toNodeHandler(this.mcpHandler());

  /** The SDK's handler, a fresh {@link sdk2Server} per request; a subclass may serve more (the conformance target adds the suite's fixture tools). */
  protected mcpHandler(): McpHttpHandler {
    return createMcpHandler(() => sdk2Server());
  }

  @All()
  async serve(@Req() req: NestRequest, @Res() res: NestResponse): Promise<void> {
    await this.handle((req.raw ?? req) as NodeIncomingMessageLike, (res.raw ?? res) as NodeServerResponseLike, req.body);
  }
}

/** A fresh server per request (the SDK's stateless idiom): tools, a prompt, a resource and a template. */
export function sdk2Server(): McpServer {
  const server = new McpServer({ name: 'nestjs-keycard-sample-sdk2', version: '1.0.0' });
  const text = (value: unknown) => ({ content: [{ type: 'text' as const, text: JSON.stringify(value) }] });
  server.registerTool('whoami', { description: 'Which agent is calling, for which user, with which scopes' }, (ctx) => {
    const info = (ctx as { authInfo?: McpAuthInfo }).authInfo;
    return text({ agent: info?.clientId, user: info?.extra.subject, scopes: info?.scopes });
  });
  server.registerTool(
    'repo_info',
    { description: 'Facts about one repository', inputSchema: z.object({ repo: z.string().meta({ 'x-mcp-header': 'Repo' }) }) },
    ({ repo }) => text({ repo, stars: 0 }),
  );
  server.registerTool('purge_repo', { description: 'Deletes a repository (admins only)', inputSchema: z.object({ repo: z.string() }) }, ({ repo }) => text({ purged: repo }));
  server.registerPrompt('greeting', { description: 'A greeting' }, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'Hello' } }] }));
  server.registerResource('readme', 'sample://readme', { mimeType: 'text/plain' }, (uri) => ({ contents: [{ uri: uri.href, text: 'The sample.' }] }));
  const notes = new ResourceTemplate('sample://notes/{id}', { list: undefined });
  server.registerResource('note', notes, { mimeType: 'text/plain' }, (uri, { id }) => ({ contents: [{ uri: uri.href, text: `note ${String(id)}` }] }));
  return server;
}
