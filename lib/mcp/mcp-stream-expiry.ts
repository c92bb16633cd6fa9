import type { ServerResponse } from 'node:http';
import type { CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';

/**
 * Ends an MCP answer when the token that opened it expires (catalogue O11, decision Q20): the
 * standalone `GET` SSE stream, and a POST whose answer streams SSE (progress, then the result),
 * live as long as the transport keeps writing, so they are carriers like a WebSocket. The stream is
 * closed (`end()`, the clean end of an SSE stream: MCP 2025-11-25 transports, "The server MAY
 * terminate the SSE stream if the session expires"); the client's next request, or its
 * reconnection, carries the expired token and gets 401 `invalid_token`. An answer whose headers
 * were not written yet has promised nothing: its connection is dropped. Short JSON answers close
 * long before and only cost a timer set and cleared.
 */
export function endAtExpiry(lifecycle: CarrierLifecycle, response: ServerResponse, agent: AgentContext): void {
  if (response.writableEnded) return;
  const binding = lifecycle.bind({ agent, end: () => closeStream(response) });
  response.once('close', () => binding.close());
}

function closeStream(response: ServerResponse): void {
  if (!response.headersSent) {
    response.destroy();
    return;
  }
  // The transport does not know yet: its next write lands on an ended response and errors, which
  // Node emits as 'error' on the response, and an unheard 'error' would end the process.
  response.on('error', () => undefined);
  response.end();
}
