import { Controller, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { McpController, McpHttpControllerFor, McpStrategy, Prompt, Resource, ResourceTemplate, StreamableHttpTransport } from '@rekog/mcp-nest';
import { KeycardModule, RequireScopes } from '../../lib/index.js';
import { SampleTools } from '../mcp.js';
import { SampleSdkMcpController } from '../mcp-sdk.js';
import { CONFORMANCE_MCP_STRATEGY, ConformanceFixtureTools } from './mcp-nest-fixtures.js';
import { ConformanceSdk2McpController } from './sdk2-fixtures.js';
import type { ConformanceAdapter } from './suite.js';
import { CONFORMANCE_PATHS } from './targets.js';


/**
 * A prompt, a resource and a resource template beside the sample's tools, so the suite's `caching`
 * scenario finds every list it checks (an app without them answers those lists -32601).
 */
@McpController()
class ConformanceCatalog {
  @Prompt({ name: 'greeting', description: 'A greeting' })
  greeting() {
    return { messages: [{ role: 'user' as const, content: { type: 'text' as const, text: 'Hello' } }] };
  }

  @Resource({ uri: 'sample://readme', name: 'readme', mimeType: 'text/plain' })
  readme({ uri }: { uri: string }) {
    return { contents: [{ uri, mimeType: 'text/plain', text: 'The sample.' }] };
  }

  @ResourceTemplate({ uriTemplate: 'sample://notes/{id}', name: 'note', mimeType: 'text/plain' })
  note({ uri, id }: { uri: string; id: string }) {
    return { contents: [{ uri, mimeType: 'text/plain', text: `note ${id}` }] };
  }
}

/** Where the target listens, and the public origin (the token proxy's) its resources live at. */
export interface TargetOptions {
  zoneUrl: string;
  publicOrigin: string;
  port: number;
  /** The Nest HTTP adapter (default Express). */
  adapter?: ConformanceAdapter;
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
    providers: [{ provide: CONFORMANCE_MCP_STRATEGY, useValue: strategy }],
    controllers: [SampleTools, ConformanceCatalog, ConformanceFixtureTools, StatelessMcp, StatefulMcp, SampleSdkMcpController, ConformanceSdk2McpController],
  })
  class ConformanceTargetModule {}

  const app = await NestFactory.create(ConformanceTargetModule, options.adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), { logger: ['error'] });
  strategy.setHttpAdapter(app.getHttpAdapter());
  app.connectMicroservice({ strategy });
  await app.startAllMicroservices();
  await app.listen(options.port, '127.0.0.1');
  return app;
}
