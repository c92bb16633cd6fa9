import { Inject } from '@nestjs/common';
import { Ctx } from '@nestjs/microservices';
import { inputRequired, type InputRequiredResult } from '@modelcontextprotocol/server';
import { McpController, McpStrategy, Tool, type McpContext } from '@rekog/mcp-nest';
import { z } from 'zod';
import { CONFORMANCE_FIXTURE, FixtureLists, type ListNotifier } from './fixture-lists.js';

/** The injection token of the conformance target's mcp-nest strategy (the trigger fixtures change its lists). */
export const CONFORMANCE_MCP_STRATEGY = Symbol('CONFORMANCE_MCP_STRATEGY');

/**
 * mcp-nest 2.0.5 hands a tool's result to the SDK untouched only when it has a `content` array
 * (anything else it serialises into a text block), so an input-required result carries an empty
 * one; the SDK then judges it as the 2026-07-28 result it is (the client's declared capabilities
 * included) and answers it on the request's own response.
 */
const passedThrough = (result: InputRequiredResult) => ({ ...result, content: [] });

/**
 * The conformance suite's fixture tools (scenario `server-stateless`, SEP-2575) on mcp-nest, beside
 * the sample's tools and behind the same guard (the endpoint's `read` scope): what they do and which
 * check each serves is said on the SDK 2.x twin, `addSdk2Fixtures`. The trigger tools register or
 * remove a dynamic tool or prompt on the strategy, which announces the change on every transport's
 * open `subscriptions/listen` streams.
 */
@McpController()
export class ConformanceFixtureTools {
  private readonly lists = new FixtureLists();

  constructor(@Inject(CONFORMANCE_MCP_STRATEGY) private readonly strategy: McpStrategy) {}

  @Tool({ name: CONFORMANCE_FIXTURE.missingCapability, description: 'Needs a sampling round from the client' })
  needsSampling() {
    return passedThrough(inputRequired({ inputRequests: { summary: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Summarise the sample.' } }], maxTokens: 50 }) } }));
  }

  @Tool({ name: CONFORMANCE_FIXTURE.streamingElicitation, description: 'Asks the user to confirm' })
  asksToConfirm() {
    return passedThrough(inputRequired({ inputRequests: { confirm: inputRequired.elicit({ message: 'Proceed?', requestedSchema: z.object({ confirm: z.boolean() }) }) } }));
  }

  @Tool({ name: CONFORMANCE_FIXTURE.logging, description: 'Logs one line at info' })
  logs(@Ctx() ctx: McpContext) {
    ctx.log.info('the logging fixture ran');
    return { logged: true };
  }

  @Tool({ name: CONFORMANCE_FIXTURE.triggerToolChange, description: 'Adds or removes a tool' })
  toggleTool() {
    return { changed: this.lists.toggle('tools', this.changes()) };
  }

  @Tool({ name: CONFORMANCE_FIXTURE.triggerPromptChange, description: 'Adds or removes a prompt' })
  togglePrompt() {
    return { changed: this.lists.toggle('prompts', this.changes()) };
  }

  /** mcp-nest announces a list change when an entry is registered or removed, so applying the toggle is the notice. */
  private changes(): ListNotifier {
    const here = () => 'here';
    return {
      toolsChanged: () => {
        if (this.lists.has('tools')) this.strategy.registerTool({ name: CONFORMANCE_FIXTURE.dynamicTool, description: 'Present while toggled on', handler: here });
        else this.strategy.removeTool(CONFORMANCE_FIXTURE.dynamicTool);
      },
      promptsChanged: () => {
        if (this.lists.has('prompts')) this.strategy.registerPrompt({ name: CONFORMANCE_FIXTURE.dynamicPrompt, description: 'Present while toggled on', handler: () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'here' } }] }) });
        else this.strategy.removePrompt(CONFORMANCE_FIXTURE.dynamicPrompt);
      },
    };
  }
}
