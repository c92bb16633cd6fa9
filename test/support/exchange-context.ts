import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { KEYCARD_CLOCK, KeycardModule, TokenExchangeService, type Clock, type KeycardModuleOptions } from '../../lib/index.js';
import { CapturingLogger } from './keycard-app.js';

/** A Nest application context (no HTTP server) with the exchange service, as an agent backend has. */
export async function startExchangeContext(options: Omit<KeycardModuleOptions, 'logger'>) {
  const logger = new CapturingLogger();
  @Module({ imports: [KeycardModule.forRoot({ ...options, logger })] })
  class AgentBackendModule {}
  const context = await NestFactory.createApplicationContext(AgentBackendModule, { logger: false });
  const clock = { offsetMs: 0 };
  context.get<Clock>(KEYCARD_CLOCK).now = () => Date.now() + clock.offsetMs;
  return { context, service: context.get(TokenExchangeService), logger, clock, close: () => context.close() };
}
