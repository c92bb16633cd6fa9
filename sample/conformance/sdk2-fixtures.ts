import { Controller } from '@nestjs/common';
import { createMcpHandler, inputRequired, type McpHttpHandler, type McpServer, type ServerContext } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { McpEndpoint, RequireScopes } from '../../lib/index.js';
import { sdk2Server, SampleSdk2McpController } from '../mcp-sdk2.js';
import { CONFORMANCE_FIXTURE, FixtureLists, type ListNotifier } from './fixture-lists.js';

/**
 * The sample's MCP SDK 2.x endpoint with the suite's fixture tools added ({@link addSdk2Fixtures}),
 * under the same path, scopes and per-tool requirements: the conformance target's SDK 2.x shape.
 */
@McpEndpoint({ tools: { purge_repo: ['admin'] } })
@RequireScopes('read')
@Controller('sdk2-mcp')
export class ConformanceSdk2McpController extends SampleSdk2McpController {
  protected override mcpHandler(): McpHttpHandler {
    const lists = new FixtureLists();
    const handler: McpHttpHandler = createMcpHandler(() => addSdk2Fixtures(sdk2Server(), lists, () => handler.notify));
    return handler;
  }
}

const done = (text: string) => ({ content: [{ type: 'text' as const, text }] });

/**
 * The conformance suite's fixture tools (scenario `server-stateless`, SEP-2575) on an MCP SDK 2.x
 * server, beside the sample's own tools and behind the same guard. The SDK does the protocol work
 * each check is about; the tools only give it something to do:
 * - `test_missing_capability` asks the client for a sampling round (an input-required result); a
 *   client that did not declare `sampling` gets the SDK's `-32021` MissingRequiredClientCapability,
 *   HTTP 400;
 * - `test_streaming_elicitation` asks for an elicitation the 2026-07-28 way: an input-required
 *   result on its own response, never an independent `elicitation/create` request;
 * - `test_logging_tool` logs; the SDK sends `notifications/message` only when the request's `_meta`
 *   names a `logLevel`;
 * - `test_trigger_tool_change` and `test_trigger_prompt_change` add or remove one tool or prompt
 *   ({@link FixtureLists}) and announce it on the open `subscriptions/listen` streams.
 */
export function addSdk2Fixtures(server: McpServer, lists: FixtureLists, notify: () => ListNotifier): McpServer {
  server.server.registerCapabilities({ logging: {} });
  server.registerTool(CONFORMANCE_FIXTURE.missingCapability, { description: 'Needs a sampling round from the client' }, () =>
    inputRequired({ inputRequests: { summary: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Summarise the sample.' } }], maxTokens: 50 }) } }),
  );
  server.registerTool(CONFORMANCE_FIXTURE.streamingElicitation, { description: 'Asks the user to confirm' }, () =>
    inputRequired({ inputRequests: { confirm: inputRequired.elicit({ message: 'Proceed?', requestedSchema: z.object({ confirm: z.boolean() }) }) } }),
  );
  server.registerTool(CONFORMANCE_FIXTURE.logging, { description: 'Logs one line at info' }, async (ctx: ServerContext) => {
    await ctx.mcpReq.log('info', 'the logging fixture ran');
    return done('logged');
  });
  server.registerTool(CONFORMANCE_FIXTURE.triggerToolChange, { description: 'Adds or removes a tool' }, () => done(lists.toggle('tools', notify())));
  server.registerTool(CONFORMANCE_FIXTURE.triggerPromptChange, { description: 'Adds or removes a prompt' }, () => done(lists.toggle('prompts', notify())));
  if (lists.has('tools')) server.registerTool(CONFORMANCE_FIXTURE.dynamicTool, { description: 'Present while toggled on' }, () => done('here'));
  if (lists.has('prompts')) server.registerPrompt(CONFORMANCE_FIXTURE.dynamicPrompt, { description: 'Present while toggled on' }, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'here' } }] }));
  return server;
}
