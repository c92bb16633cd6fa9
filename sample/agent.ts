import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { KeycardModule, TokenExchangeService } from '../lib/index.js';

/**
 * An agent backend: no HTTP server, just the exchange service with the agent's own credentials,
 * as a real agent process would run it.
 */
export async function startAgent(zoneUrl: string, clientId: string, clientSecret: string) {
  @Module({ imports: [KeycardModule.forRoot({ zoneUrl, clientCredentials: { clientId, clientSecret } })] })
  class AgentModule {}
  const context = await NestFactory.createApplicationContext(AgentModule, { logger: ['error'] });
  return { clientId, tokens: context.get(TokenExchangeService), close: () => context.close() };
}

export type RunningAgent = Awaited<ReturnType<typeof startAgent>>;
