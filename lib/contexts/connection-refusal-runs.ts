import type { KeycardLogger } from '../keycard-options.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { denialLine, denialLogLevel, logAtLevel } from '../logging/denial-log-level.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';

/**
 * Folds the log lines of refused messages on a long-lived connection (catalogue O5): a client that
 * sends 10 000 refused messages on one connection wrote 10 000 lines, which cost the disk and the log
 * pipeline and drowned every other line. Now the first refusal of a **run** (the same handler refused
 * for the same reason on one connection) is logged as any refusal is, the following ones are only
 * counted, and one summary line says how many more there were:
 *
 * - when the connection serves a message (another outcome: the runs it had end),
 * - when the connection closes,
 * - and at most once per {@link REFUSAL_RUN_SUMMARY_MS} while a run goes on, so a run that never
 *   ends still shows (the run goes on counting afresh after it).
 *
 * Runs are kept per handler and reason, not only the latest: a client alternating two refused
 * handlers would otherwise start a new run, and write a line, with every message. Their number is
 * bounded by the app's handlers and the reasons (at most {@link MAX_RUNS} per connection; refusals
 * of further handlers fold into one run per reason, "other calls"). Only the log line is folded: every refusal is still
 * answered and published as a decision event (subscribers and the audit log see each one).
 *
 * A summary line is the refusal's line (same level, call, status, reason, agent, never the token)
 * followed by `repeated=<n>`. The first line goes through the guard's `logDenial` (an app's override
 * sees it); summaries are written to the module's logger.
 */

/** At most one summary per run per minute while it goes on, in milliseconds. */
export const REFUSAL_RUN_SUMMARY_MS = 60_000;

/**
 * Runs of distinct handlers tracked per connection; refusals of further handlers fold into one run
 * per reason, named {@link OTHER_CALLS} (their count is bounded by the reasons' vocabulary).
 */
export const MAX_RUNS = 32;

/** How the summary of the refusals beyond {@link MAX_RUNS} names their calls (the first of them is logged on its own line). */
const OTHER_CALLS = `other calls (beyond ${MAX_RUNS} runs)`;

/** One refusal of a message on a connection, as {@link startsRun} judges it. */
export interface ConnectionRefusal {
  /** The connection's carrier: a `ws` client, a socket.io socket, a graphql-ws or Mercurius connection context. */
  readonly carrier: object;
  /** The handler, in bounded words (the event pattern, the schema coordinate): never the client's own (an operation name). */
  readonly handler: string;
  readonly denial: KeycardException;
  /** The call as its first line names it (`ws write`), read once per run. */
  readonly describe: () => string;
  readonly agent: AgentContext | undefined;
  readonly logger: KeycardLogger;
}

/** A run: the line its first refusal wrote, and how many identical refusals followed since it (or its last summary). */
interface Run {
  readonly line: string;
  readonly level: 'debug' | 'warn' | 'error';
  more: number;
}

/** The runs of one connection. */
interface Runs {
  readonly runs: Map<string, Run>;
  readonly logger: KeycardLogger;
  /** The next summary while runs go on; set only while one has a count. */
  timer?: ReturnType<typeof setTimeout>;
}

/** The runs of each connection, keyed by its socket (see {@link connectionOf}). */
const byConnection = new WeakMap<object, Runs>();
/** Connections with runs: a served message on a connection without any costs one comparison. */
let tracked = 0;
/**
 * The runs of connections with refusals counted and not yet summarised (their timer is set): the
 * app writes them as it shuts down ({@link flushRuns}), since a connection can close after it (a
 * client that no longer reads keeps its socket closing for `ws`' close timeout, 30 s).
 */
const pending = new Set<Runs>();

/**
 * Notes a refused message: `true` when its line is to be written (the first of its run), `false`
 * when it was counted in a run whose first line is written already.
 */
export function startsRun(refusal: ConnectionRefusal): boolean {
  const connection = connectionOf(refusal.carrier);
  const known = byConnection.get(connection);
  // Decided after the connection closed (the decision waited on an app's validator, the limiter's
  // store): no close is left to write a summary at, so each is logged on its own line.
  if (known === undefined && closed(connection)) return true;
  const runs = known ?? track(connection, refusal.logger);
  const reason = `${refusal.denial.getStatus()}\n${refusal.denial.code}`;
  let key = `${refusal.handler}\n${reason}`;
  // Beyond the runs a connection keeps, one run per reason folds the other handlers: a schema
  // with more protected fields than that would otherwise give back a line per refusal (per alias).
  let run = runs.runs.get(key);
  const overflow = run === undefined && runs.runs.size >= MAX_RUNS;
  if (overflow) {
    key = `${OTHER_CALLS}\n${reason}`;
    run = runs.runs.get(key);
  }
  if (run !== undefined) {
    run.more++;
    if (runs.timer === undefined) {
      runs.timer = setTimeout(() => summarise(runs, false), REFUSAL_RUN_SUMMARY_MS).unref();
      pending.add(runs);
    }
    return false;
  }
  const { denial, agent } = refusal;
  const line = denialLine(overflow ? OTHER_CALLS : refusal.describe(), denial, agent);
  runs.runs.set(key, { line, level: denialLogLevel(denial), more: 0 });
  return true;
}

/**
 * A message of the connection of `carrier` was served (another outcome): its runs end, each with
 * its summary when it had repeats. Costs one comparison while no connection has runs.
 */
export function endRuns(carrier: object): void {
  if (tracked === 0) return;
  const runs = byConnection.get(connectionOf(carrier));
  if (runs !== undefined && runs.runs.size > 0) summarise(runs, true);
}

/**
 * Writes now the summary of every run counted on `logger` (the module's, one per app): the app is
 * shutting down, and its connections may close after it has, or never while it runs. The runs go
 * on counting afresh.
 */
export function flushRuns(logger: KeycardLogger): void {
  for (const runs of [...pending]) if (runs.logger === logger) summarise(runs, false);
}

/** Starts tracking a connection: its runs end (with their summaries) when it closes. */
function track(connection: object, logger: KeycardLogger): Runs {
  const runs: Runs = { runs: new Map(), logger };
  byConnection.set(connection, runs);
  tracked++;
  onClose(connection, () => {
    summarise(runs, true);
    byConnection.delete(connection);
    tracked--;
  });
  return runs;
}

/** Writes the summary of every run with repeats; `end`: the runs end (else they go on, counting afresh). */
function summarise(runs: Runs, end: boolean): void {
  if (runs.timer !== undefined) clearTimeout(runs.timer);
  runs.timer = undefined;
  pending.delete(runs);
  for (const run of runs.runs.values()) {
    if (run.more === 0) continue;
    const line = `${run.line} repeated=${run.more}`;
    run.more = 0;
    logAtLevel(runs.logger, run.level, line);
  }
  if (end) runs.runs.clear();
}

/**
 * The object a connection's messages share: a graphql-ws or Mercurius context's `ws` socket (the
 * context may be one per operation), else the carrier itself (a `ws` client, a socket.io socket).
 */
function connectionOf(carrier: object): object {
  const socket = (carrier as { extra?: { socket?: unknown } }).extra?.socket;
  return typeof socket === 'object' && socket !== null ? socket : carrier;
}

/**
 * True once the connection has closed (its close event is past): a `ws` socket `CLOSED` (3), an
 * engine.io connection `closed`, a socket.io socket no longer `connected`.
 */
function closed(connection: object): boolean {
  const { readyState, handshake, connected } = connection as { readyState?: unknown; handshake?: unknown; connected?: unknown };
  if (handshake !== undefined) return connected === false;
  return readyState === 3 || readyState === 'closed';
}

/** Calls `end` once when the connection closes: `close` of a `ws` socket, `disconnect` of a socket.io one. */
function onClose(connection: object, end: () => void): void {
  const emitter = connection as { once?: (event: string, listener: () => void) => unknown; handshake?: unknown };
  if (typeof emitter.once !== 'function') return; // no close to hear: the timer still writes summaries
  emitter.once(emitter.handshake === undefined ? 'close' : 'disconnect', end);
}
