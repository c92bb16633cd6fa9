import { Controller } from '@nestjs/common';
import { Throttle } from '@nestjs/throttler';
import { McpController, McpHttpControllerFor, McpStrategy, StreamableHttpTransport, Tool } from '@rekog/mcp-nest';
import { Agent, Public, RequireScopes, type AgentContext } from '../lib/index.js';
import { meta } from './data.controller.js';

/**
 * The sample's MCP server (@rekog/mcp-nest): the same data as `/api/data`, as tools an AI agent calls.
 * Connect it in main.ts (`app.connectMicroservice({ strategy: mcpStrategy })`).
 */
export const mcpTransport = new StreamableHttpTransport();
export const mcpStrategy = new McpStrategy({ name: 'nestjs-keycard-sample', version: '1.0.0', transports: [mcpTransport], logging: false });

@McpController()
export class SampleTools {
  @Tool({ name: 'whoami', description: 'Which agent is calling, for which user, with which scopes' })
  whoami(@Agent() agent: AgentContext) {
    return meta(agent);
  }

  @Tool({ name: 'delete_all_data', description: 'Deletes every record (admins only)' })
  @RequireScopes('admin')
  deleteAll(@Agent() agent: AgentContext) {
    return { deleted: 0, note: 'the sample keeps its data', meta: meta(agent) };
  }

  @Tool({ name: 'status', description: 'Is the API up? (no token needed)' })
  @Public()
  status() {
    return { status: 'ok' };
  }
}

/**
 * The MCP endpoint as a Nest controller, behind the Keycard guard (never mcp-nest's self-mounted
 * route). `read` is what any MCP client signs in for; tools may require more (step-up).
 */
@RequireScopes('read')
@Throttle({ default: { limit: 100, ttl: 10_000 } }) // an MCP session is chatty: initialize, list, call…
@Controller('mcp')
export class SampleMcpController extends McpHttpControllerFor(mcpTransport) {}
