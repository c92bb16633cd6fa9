import type { Verdict } from './suite.js';
import { SHAPES } from './targets.js';

/** A check of the published suite that cannot pass on one shape, and why. */
export interface ExpectedFailure {
  shape: string;
  scenario: string;
  id: string;
  reason: string;
}

/**
 * Why mcp-nest cannot run the custom-header checks: it refuses the only thing they test. mcp-nest
 * 2.0.5 (`assertNoMcpParamHeaderMirroring` in `dist/mcp/transport/tool-schema.js`, called for every
 * `@Tool()` and `registerTool()`) throws at bootstrap when a tool's schema declares `x-mcp-header`:
 * it serves tools through raw request handlers, where the SDK's check of `Mcp-Param-*` headers
 * against the body never runs, so it will not let clients mirror values nothing verifies. Not the
 * module's guard: the guard passes `x-mcp-header` tools on the SDK 2.x shape, which runs these five
 * checks and passes them, and it refuses malformed `Mcp-Param-*` values on every shape (U9).
 */
const MCP_NEST_REFUSES_X_MCP_HEADER =
  'mcp-nest 2.0.5 refuses x-mcp-header tools at bootstrap (assertNoMcpParamHeaderMirroring), so the suite finds none to test; the SDK 2.x shape has one and passes';

/** The checks SEP-2243 declares for `http-custom-header-server-validation`, all "Not testable" without an `x-mcp-header` tool. */
const CUSTOM_HEADER_CHECKS = [
  'sep-2243-server-no-xmcp-tool',
  'sep-2243-server-decode-base64',
  'sep-2243-server-validate-param-match',
  'sep-2243-server-reject-invalid-param-chars',
  'sep-2243-server-reject-param-mismatch',
];

/**
 * Checks of the published suite that cannot pass on a given shape for a reason outside the module,
 * each with that reason. The suite reports them "Not testable" (a FAILURE with
 * `details.untestable`) or, for a SHOULD, WARNING; only then, and only on the listed shape, does
 * the U17 test accept them, on every adapter. An entry whose check passes is stale and fails the U17 test, so the
 * list shrinks as soon as a shape can run a check.
 */
export const EXPECTED_FAILURES: readonly ExpectedFailure[] = CUSTOM_HEADER_CHECKS.map((id) => ({
  shape: SHAPES.mcpNest,
  scenario: 'http-custom-header-server-validation',
  id,
  reason: MCP_NEST_REFUSES_X_MCP_HEADER,
}));

/** The listed entry for a verdict's shape, scenario and check, if any. */
export function expectedFailureOf(v: Pick<Verdict, 'shape' | 'scenario' | 'id'>): ExpectedFailure | undefined {
  return EXPECTED_FAILURES.find((e) => e.shape === v.shape && e.scenario === v.scenario && e.id === v.id);
}

/**
 * Whether a check's verdict is one of the listed ones: listed for its shape, and the suite could not
 * exercise it ("Not testable", a FAILURE with `details.untestable`) or reports a listed SHOULD as WARNING.
 */
export function isExpectedFailure(v: Verdict): boolean {
  if (expectedFailureOf(v) === undefined) return false;
  return (v.status === 'FAILURE' && v.untestable === true) || v.status === 'WARNING';
}

/** Listed entries no verdict of the run matches as an expected failure: they pass now (or no longer run) and must go. */
export function staleExpectedFailures(verdicts: readonly Verdict[]): ExpectedFailure[] {
  return EXPECTED_FAILURES.filter((e) => !verdicts.some((v) => expectedFailureOf(v) === e && isExpectedFailure(v)));
}
