import { Controller, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { McpHttpControllerFor, McpStrategy, StreamableHttpTransport } from '@rekog/mcp-nest';
import { KeycardModule, RequireScopes } from '../../lib/index.js';
import { SampleTools } from '../mcp.js';
import { SampleSdkMcpController } from '../mcp-sdk.js';

/** The MCP endpoints under test, each its own resource: mcp-nest stateless and stateful, and the MCP SDK's transport. */
export const CONFORMANCE_PATHS = { mcpNest: '/mcp', mcpNestStateful: '/mcp-session', sdk: '/sdk-mcp' } as const;

/** Where the target listens, and the public origin (the token proxy's) its resources live at. */
export interface TargetOptions {
  zoneUrl: string;
  publicOrigin: string;
  port: number;
}

/**
 * The sample's MCP tools and both MCP shapes, configured only through the module's public options,
 * on loopback: the app the conformance suite runs against (`npm run conformance:mcp`).
 */
export async function startConformanceTarget(options: TargetOptions): Promise<INestApplication> {
  const stateless = new StreamableHttpTransport();
  const stateful = new StreamableHttpTransport({ statefulMode: true });
  const strategy = new McpStrategy({ name: 'nestjs-keycard-sample', version: '1.0.0', transports: [stateless, stateful], logging: false });

  @RequireScopes('read')
  @Controller(CONFORMANCE_PATHS.mcpNest.slice(1))
  class StatelessMcp extends McpHttpControllerFor(stateless) {}

  @RequireScopes('read')
  @Controller(CONFORMANCE_PATHS.mcpNestStateful.slice(1))
  class StatefulMcp extends McpHttpControllerFor(stateful) {}

  @Module({
    imports: [
      KeycardModule.forRoot({
        zoneUrl: options.zoneUrl,
        resource: Object.values(CONFORMANCE_PATHS).map((path) => `${options.publicOrigin}${path}`),
        scopesSupported: ['read', 'admin'],
        logger: { log: () => undefined, warn: (m: unknown) => console.warn(`[keycard] ${String(m)}`), error: (m: unknown) => console.error(`[keycard] ${String(m)}`) },
      }),
    ],
    controllers: [SampleTools, StatelessMcp, StatefulMcp, SampleSdkMcpController],
  })
  class ConformanceTargetModule {}

  const app = await NestFactory.create(ConformanceTargetModule, { logger: ['error'] });
  strategy.setHttpAdapter(app.getHttpAdapter());
  app.connectMicroservice({ strategy });
  await app.startAllMicroservices();
  await app.listen(options.port, '127.0.0.1');
  return app;
}
