/** The MCP endpoints under test, each its own resource: mcp-nest stateless and stateful, the MCP SDK 1.x transport and the SDK 2.x server. */
export const CONFORMANCE_PATHS = { mcpNest: '/mcp', mcpNestStateful: '/mcp-session', sdk: '/sdk-mcp', sdk2: '/sdk2-mcp' } as const;

/** The shape names verdicts carry. */
export const SHAPES = {
  mcpNest: 'mcp-nest 2.x (stateless)',
  sdk2: 'MCP SDK 2.x server, @McpEndpoint()',
  mcpNestStateful: 'mcp-nest 2.x (stateful)',
  sdk: 'MCP SDK 1.x transport, @McpEndpoint()',
} as const;

/** The published server scenarios each 2026-07-28 shape runs (catalogue U17), and the stateful-only one. */
const SCENARIOS = ['dns-rebinding-protection', 'http-header-validation', 'http-custom-header-server-validation', 'caching', 'server-stateless'];
const STATEFUL_SCENARIOS = ['server-session-lifecycle'];

/** One MCP shape of the target and the scenarios it runs. */
export interface ConformanceTarget {
  shape: string;
  path: string;
  scenarios: string[];
  /** The revision the suite speaks to it; `undefined`: the suite's default (2026-07-28). */
  specVersion?: string;
  /** It serves the suite's fixture tools (`server-stateless` calls them), probed by `probeFixtures`. */
  fixtures?: boolean;
}

/**
 * The shapes under test. mcp-nest 2.x and the MCP SDK 2.x server in an `@McpEndpoint()` controller
 * implement 2026-07-28 and run every scenario; mcp-nest's stateful mode and the SDK 1.x transport
 * implement revisions up to 2025-11-25 only, so they run the scenarios of that revision: DNS
 * rebinding (the module's `Origin` check) and, stateful, the session lifecycle.
 */
export const TARGETS: readonly ConformanceTarget[] = [
  { shape: SHAPES.mcpNest, path: CONFORMANCE_PATHS.mcpNest, scenarios: SCENARIOS, fixtures: true },
  { shape: SHAPES.sdk2, path: CONFORMANCE_PATHS.sdk2, scenarios: SCENARIOS, fixtures: true },
  { shape: SHAPES.mcpNestStateful, path: CONFORMANCE_PATHS.mcpNestStateful, scenarios: [...STATEFUL_SCENARIOS, 'dns-rebinding-protection'], specVersion: '2025-11-25' },
  { shape: SHAPES.sdk, path: CONFORMANCE_PATHS.sdk, scenarios: ['dns-rebinding-protection'], specVersion: '2025-11-25' },
];

