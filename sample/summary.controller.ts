import { Controller, Get, type Type } from '@nestjs/common';
import { Access, AccessContext, Agent, Grant, RequireScopes, type AgentContext } from '../lib/index.js';
import { meta } from './data.controller.js';

/** Where the upstream notes API is, and its resource identifier at the zone. */
export interface UpstreamApi {
  resource: string;
  url: string;
}

/**
 * `GET /api/summary`: the API calls the notes API **for the user** who called it. `@Grant()` trades
 * the caller's token for a notes token before the handler runs; the handler decides what a missing
 * token means (here: the summary is served without notes, and says why).
 */
export function summaryController(notes: UpstreamApi): Type {
  @Controller()
  class SummaryController {
    @Get('api/summary')
    @RequireScopes('read')
    @Grant({ [notes.resource]: 'notes:read' })
    async summary(@Agent() agent: AgentContext, @Access() access: AccessContext) {
      if (!access.has(notes.resource)) {
        return { meta: meta(agent), grant: access, notes: null, reason: access.errors[notes.resource]?.message };
      }
      const res = await fetch(`${notes.url}/notes`, { headers: { authorization: `Bearer ${access.access(notes.resource).accessToken}` } });
      return { meta: meta(agent), grant: access, upstream: { call: `GET ${notes.url}/notes`, status: res.status, body: (await res.json()) as unknown } };
    }
  }
  return SummaryController;
}
