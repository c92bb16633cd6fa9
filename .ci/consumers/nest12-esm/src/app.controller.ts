import { Controller, Get } from '@nestjs/common';
import { Agent, Public, RequireScopes, type AgentContext } from 'nestjs-keycard';
import { AppService } from './app.service.js';

@Controller()
export class AppController {
  constructor(private readonly appService: AppService) {}

  @Public()
  @Get()
  getHello(): string {
    return this.appService.getHello();
  }

  @Get('orders')
  @RequireScopes('orders:read')
  orders(@Agent() agent: AgentContext) {
    return { agent: agent.clientId, user: agent.subject };
  }
}
