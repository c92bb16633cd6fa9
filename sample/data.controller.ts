import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { Agent, Public, RequireAuthentication, RequireScopes, type AgentContext } from '../lib/index.js';

const FULL_DATA = [
  { id: 1, name: 'Quarterly report', owner: 'finance', confidential: true },
  { id: 2, name: 'Team roster', owner: 'people', confidential: false },
];

/** Who did what, as every handler of a protected API should be able to tell. */
export function meta(agent: AgentContext) {
  return { agent: agent.clientId, user: agent.subject, session: agent.sessionId, scopes: agent.scopes };
}

@Controller()
export class DataController {
  @Public()
  @Get('health')
  health() {
    return { status: 'ok' };
  }

  @Get('api/data')
  @RequireScopes('read')
  list(@Agent() agent: AgentContext) {
    const data = agent.scopes.includes('admin') ? FULL_DATA : FULL_DATA.filter((d) => !d.confidential);
    return { data, meta: meta(agent) };
  }

  @Post('api/data')
  @HttpCode(201)
  @RequireScopes('write')
  create(@Agent() agent: AgentContext, @Body() body: unknown) {
    return { created: body ?? null, meta: meta(agent) };
  }

  /**
   * A high-impact action: besides `write`, it needs a multi-factor sign-in (RFC 9470). A token from a
   * password sign-in gets 401 `insufficient_user_authentication` with `acr_values="urn:kc:mfa"`.
   */
  @Post('api/data/purge')
  @HttpCode(200)
  @RequireScopes('write')
  @RequireAuthentication({ acr: ['urn:kc:mfa'] })
  purge(@Agent() agent: AgentContext) {
    return { purged: true, acr: agent.claims.acr, meta: meta(agent) };
  }

  @Get('api/admin')
  @RequireScopes('admin')
  admin(@Agent() agent: AgentContext) {
    return { admin: true, meta: meta(agent) };
  }
}
