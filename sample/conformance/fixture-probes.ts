import { CONFORMANCE_FIXTURE } from './fixture-lists.js';
import type { ConformanceAdapter, Verdict } from './suite.js';

/** The revision the fixtures speak (the suite's default). */
const REVISION = '2026-07-28';

/** One JSON-RPC message of an answer (a JSON body, or one `data:` line of an event stream). */
type Message = { method?: string; result?: Record<string, unknown> & { tools?: { name: string }[] }; error?: { code: number } };

/**
 * The other half of the fixtures, which the suite's checks do not exercise: each fixture does what
 * it stands for when the client allows it, so the suite's SUCCESS on them is not a tool that merely
 * answers. Through the token proxy, as the suite calls them: with `sampling` declared,
 * `test_missing_capability` asks for a sampling round; with `elicitation` declared,
 * `test_streaming_elicitation` asks for an elicitation (both as input-required results); with a
 * `logLevel`, `test_logging_tool` logs; `test_trigger_tool_change` really adds and then removes a tool.
 */
export async function probeFixtures(target: { adapter: ConformanceAdapter; shape: string; url: string }): Promise<Verdict[]> {
  const { url } = target;
  const probes: [string, () => Promise<string | undefined>][] = [
    ['fixture-missing-capability-asks-for-sampling', () => asksFor(url, CONFORMANCE_FIXTURE.missingCapability, { sampling: {} }, 'sampling/createMessage')],
    ['fixture-streaming-elicitation-asks-for-elicitation', () => asksFor(url, CONFORMANCE_FIXTURE.streamingElicitation, { elicitation: {} }, 'elicitation/create')],
    ['fixture-logging-tool-logs-with-loglevel', () => logsWithLevel(url)],
    ['fixture-trigger-tool-change-changes-the-list', () => togglesTool(url)],
  ];
  const verdicts: Verdict[] = [];
  for (const [id, probe] of probes) {
    const problem = await probe().catch((error: unknown) => `probe failed: ${error instanceof Error ? error.message : String(error)}`);
    verdicts.push({ adapter: target.adapter, shape: target.shape, scenario: 'fixtures', id, name: id, status: problem === undefined ? 'SUCCESS' : 'FAILURE', ...(problem === undefined ? {} : { message: problem }) });
  }
  return verdicts;
}

async function asksFor(url: string, tool: string, capabilities: object, method: string): Promise<string | undefined> {
  const [answer] = await call(url, { method: 'tools/call', name: tool, meta: { 'io.modelcontextprotocol/clientCapabilities': capabilities } });
  const requests = Object.values((answer?.result?.inputRequests ?? {}) as Record<string, { method?: string }>);
  if (answer?.result?.resultType === 'input_required' && requests.some((r) => r.method === method)) return undefined;
  return `expected an input-required result asking for ${method}, got ${JSON.stringify(answer)}`;
}

async function logsWithLevel(url: string): Promise<string | undefined> {
  const messages = await call(url, { method: 'tools/call', name: CONFORMANCE_FIXTURE.logging, meta: { 'io.modelcontextprotocol/logLevel': 'debug' } });
  return messages.some((m) => m.method === 'notifications/message') ? undefined : `expected a notifications/message with logLevel debug, got ${JSON.stringify(messages)}`;
}

async function togglesTool(url: string): Promise<string | undefined> {
  const listed = async () => (await call(url, { method: 'tools/list' }))[0]?.result?.tools?.some((t) => t.name === CONFORMANCE_FIXTURE.dynamicTool);
  const before = await listed();
  await call(url, { method: 'tools/call', name: CONFORMANCE_FIXTURE.triggerToolChange });
  const after = await listed();
  await call(url, { method: 'tools/call', name: CONFORMANCE_FIXTURE.triggerToolChange });
  const restored = await listed();
  return before !== after && before === restored ? undefined : `expected ${CONFORMANCE_FIXTURE.dynamicTool} listed to flip and flip back, got ${String(before)} → ${String(after)} → ${String(restored)}`;
}

/** One 2026-07-28 request with consistent headers (the guard refuses anything else); the messages of its answer. */
async function call(url: string, request: { method: string; name?: string; meta?: Record<string, unknown> }): Promise<Message[]> {
  const meta = {
    'io.modelcontextprotocol/protocolVersion': REVISION,
    'io.modelcontextprotocol/clientInfo': { name: 'fixture-probe', version: '1.0.0' },
    'io.modelcontextprotocol/clientCapabilities': {},
    ...request.meta,
  };
  const params = { ...(request.name === undefined ? {} : { name: request.name, arguments: {} }), _meta: meta };
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': REVISION,
    'mcp-method': request.method,
    ...(request.name === undefined ? {} : { 'mcp-name': request.name }),
  };
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: request.method, params }), signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  if (!(response.headers.get('content-type') ?? '').includes('text/event-stream')) return [JSON.parse(text) as Message];
  return text.split(/\r?\n/).filter((line) => line.startsWith('data:')).map((line) => JSON.parse(line.slice(5)) as Message);
}
