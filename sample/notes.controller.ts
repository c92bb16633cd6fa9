import { Controller, Get } from '@nestjs/common';
import { Agent, RequireScopes, type AgentContext } from '../lib/index.js';
import { meta } from './data.controller.js';

/**
 * The second local API of the sample (think: a notes or CRM service the first API depends on). It
 * is protected like any other: it sees which agent calls, for which user.
 */
@Controller()
export class NotesController {
  @Get('notes')
  @RequireScopes('notes:read')
  list(@Agent() agent: AgentContext) {
    return { notes: [{ id: 1, text: 'Call the accountant about Q3' }], meta: meta(agent) };
  }
}
