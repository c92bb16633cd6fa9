/**
 * The MCP SDK's Streamable HTTP transport in stateful mode, in a Nest controller marked
 * `@McpEndpoint()`, the way the SDK's own examples keep one transport per session: `initialize`
 * without a session id opens one, every other request is routed by `Mcp-Session-Id`, and an
 * unknown id gets the SDK's own 404 "Session not found". Its tools report who runs them, stream
 * SSE progress on the POST's response, and push notifications on the session's standalone `GET`
 * stream, so the suites can see what reached whom and when each stream closed.
 */
import { Controller, Delete, Get, Post, Req, Res, type Type } from '@nestjs/common';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { McpEndpoint, type McpAuthInfo } from '../../lib/index.js';

/** What the stateful endpoints saw, for assertions. */
export interface McpSessionLog {
  /** `<tool>:<user>` for every tool run, in order. */
  runs: string[];
  /** When (ms since the epoch) each response of `method` closed, by HTTP method: `GET` streams and `POST` answers. */
  closed: { method: string; at: number }[];
}

/** Items a streaming tool pushes, one every {@link TICK_MS}: about 4 s of them. */
const TICKS = 20;
const TICK_MS = 200;

/** The SDK's answer to an unknown session (what its examples write, and what its own transport answers). */
function sessionNotFound(res: ServerResponse): void {
  res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }));
}

/** One session's server: `whoami`, `progress` (SSE progress on the POST) and `start_ticks` (notifications on the GET stream). */
function sessionServer(log: McpSessionLog, timers: Set<NodeJS.Timeout>): McpServer {
  const server = new McpServer({ name: 'sdk-session', version: '1.0.0' }, { capabilities: { logging: {} } });
  server.registerTool('whoami', { description: 'Who is calling, for whom' }, (extra) => {
    const info = extra.authInfo as McpAuthInfo | undefined;
    const user = info?.extra.subject;
    log.runs.push(`whoami:${user}`);
    return { content: [{ type: 'text', text: JSON.stringify({ agent: info?.clientId, user }) }] };
  });
  server.registerTool('progress', { description: 'Streams progress on its own response' }, async (extra) => {
    log.runs.push(`progress:${(extra.authInfo as McpAuthInfo | undefined)?.extra.subject}`);
    const progressToken = extra._meta?.progressToken ?? 0;
    for (let n = 1; n <= TICKS; n++) {
      await new Promise((resolve) => setTimeout(resolve, TICK_MS).unref()); // a run outliving its test holds no process open
      // Fails once the module closed the stream: nothing more can reach the client.
      const sent = await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: n, total: TICKS } }).then(
        () => true,
        () => false,
      );
      if (!sent) break;
    }
    return { content: [{ type: 'text', text: 'done' }] };
  });
  server.registerTool('start_ticks', { description: 'Pushes notifications on the standalone stream' }, () => {
    let n = 0;
    const timer = setInterval(() => {
      if (++n >= TICKS) clearInterval(timer);
      void server.sendLoggingMessage({ level: 'info', data: n }).catch(() => undefined);
    }, TICK_MS).unref();
    timers.add(timer);
    return { content: [{ type: 'text', text: 'started' }] };
  });
  return server;
}

/** A stateful SDK endpoint at `/<path>` (one transport per session), recording into `log`. */
export function sdkSessionController(path: string, log: McpSessionLog): Type {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const timers = new Set<NodeJS.Timeout>();

  async function handle(req: { raw?: IncomingMessage; body?: unknown }, res: { raw?: ServerResponse }): Promise<void> {
    const nodeReq = (req.raw ?? req) as IncomingMessage;
    const nodeRes = (res.raw ?? res) as ServerResponse;
    nodeRes.once('close', () => log.closed.push({ method: nodeReq.method ?? '', at: Date.now() }));
    const id = nodeReq.headers['mcp-session-id'];
    if (id === undefined && nodeReq.method === 'POST' && isInitializeRequest(req.body)) {
      const server = sessionServer(log, timers);
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => void sessions.set(sid, transport),
        onsessionclosed: (sid) => void sessions.delete(sid),
      });
      await server.connect(transport);
      await transport.handleRequest(nodeReq, nodeRes, req.body);
      return;
    }
    const transport = typeof id === 'string' ? sessions.get(id) : undefined;
    if (transport === undefined) return sessionNotFound(nodeRes);
    await transport.handleRequest(nodeReq, nodeRes, req.body);
  }

  @McpEndpoint()
  @Controller(path)
  class SdkSessionController {
    @Post()
    post(@Req() req: { raw?: IncomingMessage; body?: unknown }, @Res() res: { raw?: ServerResponse }) {
      return handle(req, res);
    }

    @Get()
    get(@Req() req: { raw?: IncomingMessage }, @Res() res: { raw?: ServerResponse }) {
      return handle(req, res);
    }

    @Delete()
    delete(@Req() req: { raw?: IncomingMessage }, @Res() res: { raw?: ServerResponse }) {
      return handle(req, res);
    }

    /** Nest calls it on app.close(): no ticker outlives the app. */
    onModuleDestroy() {
      for (const timer of timers) clearInterval(timer);
      for (const transport of sessions.values()) void transport.close();
    }
  }
  return SdkSessionController;
}
