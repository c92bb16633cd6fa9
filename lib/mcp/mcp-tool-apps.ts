import { type ArgumentsHost, type CanActivate, Catch, type ExceptionFilter, type ExecutionContext } from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA, GUARDS_METADATA } from '@nestjs/common/constants.js';
import { throwError } from 'rxjs';
import { AppsPerClass, bindOnce } from '../contexts/apps-per-class.js';
import { mcpRequestOf, toolRefusal } from '../contexts/mcp.context.js';
import { ResourceAccessError } from '../exchange/access-context.js';
import { TokenExchangeError } from '../exchange/token-exchange.error.js';
import { ResourceNotConfiguredException } from '../resource-server/keycard.exceptions.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';

/** One app's part in judging the tool calls of the classes it serves (`McpTools`). */
export interface ToolApp {
  /** Judges a tool call with this app's guard (its zones, its resources, its rules). */
  judge(context: ExecutionContext): ReturnType<CanActivate['canActivate']>;
  /** Answers a tool's failed token exchange on this app's calls (and logs it in this app's log). */
  readonly exchangeFilter: ExceptionFilter;
  /** Says once, in this app's log, that a call to `call` was refused because its app is unknown. */
  reportUnknownApp(call: string): void;
}

/** The app whose guard judged a request on its MCP endpoint (set by {@link claimRequest}). */
const APP = Symbol('keycard.mcp-app');

type Claimable = { [APP]?: ToolApp };

/** The apps alive in this process, per tool class they serve. */
const toolApps = new AppsPerClass<ToolApp>();

/**
 * Bound at class level to every mcp-nest tool class, once per class and for every app of the
 * process: mcp-nest's RPC pipeline reads a tool's guards from its class, which every app of the
 * process shares, so the guard there finds the app of each call — the one whose guard admitted the
 * call's HTTP request on its MCP endpoint, else the only app serving the class — and judges the
 * call with that app's guard. It fails closed when it cannot tell (several apps, a request no
 * guard claimed: a self-mounted transport, stdio).
 */
const TOOL_GUARD: CanActivate = {
  canActivate(context: ExecutionContext) {
    // An HTTP route of a tool class (`@McpController()` is a `@Controller()`) is judged by the
    // global guard of the app whose server received it, as any route: nothing to dispatch here.
    if (context.getType<string>() === 'http') return true;
    const app = appOf(context);
    return app === undefined ? refuseUnknownApp(context) : app.judge(context);
  },
};

/**
 * Bound at class level to every tool class beside {@link TOOL_GUARD}, first among its filters
 * (Nest tries the last declared first, so the class's own come before it): a tool whose grant
 * failed answers the refusal's text rather than "Internal server error" (catalogue Q8), answered
 * and logged by the app serving the call.
 */
@Catch(TokenExchangeError, ResourceAccessError)
class ToolExchangeFilter implements ExceptionFilter<TokenExchangeError | ResourceAccessError> {
  catch(error: TokenExchangeError | ResourceAccessError, host: ArgumentsHost): unknown {
    const app = appOf(host);
    if (app !== undefined) return app.exchangeFilter.catch(error, host);
    // Not reached once TOOL_GUARD ran (it names the app on the request): Nest's own answer, without the error's text.
    if (host.getType() === 'rpc') return throwError(() => ({ status: 'error', message: 'Internal server error' }));
    throw new ResourceNotConfiguredException();
  }
}

const TOOL_EXCHANGE_FILTER = new ToolExchangeFilter();

/**
 * Puts {@link TOOL_GUARD} last among `type`'s guards and {@link TOOL_EXCHANGE_FILTER} first among
 * its filters (once per class), and counts `app` among the apps serving it until {@link leaveToolClass}.
 */
export function serveToolClass(type: object, app: ToolApp): void {
  bindOnce(GUARDS_METADATA, type, TOOL_GUARD, 'last');
  bindOnce(EXCEPTION_FILTERS_METADATA, type, TOOL_EXCHANGE_FILTER, 'first');
  toolApps.add(type, app);
}

/** `app` closed: it no longer judges nor answers calls to `type` (the class keeps the module-level guard and filter). */
export function leaveToolClass(type: object, app: ToolApp): void {
  toolApps.delete(type, app);
}

/** Marks a request `app`'s guard judged on its MCP endpoint: the tool calls it carries are `app`'s. */
export function claimRequest(request: object, app: ToolApp): void {
  (rawRequestOf(request) as Claimable)[APP] = app;
}

/**
 * The app of a call to a tool class: the one that claimed its request, else the only one serving
 * the class (then claimed for it, so the call's filter finds the app its guard chose).
 */
function appOf(host: ArgumentsHost): ToolApp | undefined {
  const request = requestOf(host);
  const claimed = request?.[APP];
  if (claimed !== undefined) return claimed;
  const only = toolApps.only((host as ExecutionContext).getClass?.());
  if (only !== undefined && request !== undefined) request[APP] = only;
  return only;
}

/** The Node request behind a call: an mcp-nest tool call's HTTP request, or an HTTP route's; `undefined` without one (stdio). */
function requestOf(host: ArgumentsHost): Claimable | undefined {
  const type = host.getType<string>();
  const request = type === 'rpc' ? mcpRequestOf(host as ExecutionContext) : type === 'http' ? host.switchToHttp().getRequest<object | undefined>() : undefined;
  return typeof request === 'object' && request !== null ? (rawRequestOf(request) as Claimable) : undefined;
}

/** Fails closed (`server_error`, as any misconfiguration) and says why in every app that serves the class. */
async function refuseUnknownApp(context: ExecutionContext): Promise<never> {
  const type = context.getClass();
  for (const app of toolApps.of(type)) app.reportUnknownApp(`${type.name}.${context.getHandler().name}`);
  const denial = new ResourceNotConfiguredException();
  throw context.getType() === 'rpc' && mcpRequestOf(context) !== undefined ? await toolRefusal(denial) : denial;
}
