import type { IncomingMessage } from 'node:http';
import type { KeycardLogger } from '../keycard-options.js';

/** pino's per-request child logger, as pino-http attaches it (`req.log`). */
interface BoundLogger {
  bindings(): unknown;
}

/**
 * Looks at the request loggers pino-http (nestjs-pino) bound to `request`: when their bindings —
 * which every log line of the request repeats — hold `token`, says how to fix it, without the
 * token. Meant for the first request that carries a token only (it allocates), so it costs
 * nothing afterwards.
 */
export function checkRequestLogger(request: IncomingMessage, token: string, logger: KeycardLogger): void {
  // pino-http keeps an existing `req.log` (Fastify puts its own there) and lists its loggers in `allLogs`.
  const holder = request as IncomingMessage & { log?: unknown; allLogs?: unknown };
  const candidates = [...(Array.isArray(holder.allLogs) ? (holder.allLogs as unknown[]) : []), holder.log];
  const loggers = candidates.filter((log): log is BoundLogger => typeof (log as Partial<BoundLogger> | undefined)?.bindings === 'function');
  const leaks = loggers.some((log) => {
    try {
      return (JSON.stringify(log.bindings()) ?? '').includes(token);
    } catch {
      return false; // not pino's: nothing to judge
    }
  });
  if (leaks) {
    logger.error(
      "The request logger (pino-http / nestjs-pino) writes each request's bearer token into every log line of that request: " +
        'wrap its options with keycardPinoHttpOptions(), exported by this module (docs/audit-and-logs.md: Logs without tokens)',
    );
  }
}
