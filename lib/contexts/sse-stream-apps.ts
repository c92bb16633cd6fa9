import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import { INTERCEPTORS_METADATA } from '@nestjs/common/constants.js';
import type { Observable } from 'rxjs';
import { ResourceNotConfiguredException } from '../resource-server/keycard.exceptions.js';
import { rawRequestOf } from '../resource-server/resource-resolver.js';
import { AppsPerClass, bindOnce } from './apps-per-class.js';
import { httpRequestOf } from './http-arguments.js';

/** One app's part in the `@Sse()` routes it serves (`KeycardStreams`). */
export interface SseApp {
  /** The Node server the app listens on (`HttpAdapterHost.httpAdapter.getHttpServer()`); `undefined` before the adapter has one. */
  httpServer(): object | undefined;
  /** This app's interceptors of a stream, outermost first (its expiry, then its exchange failures). */
  readonly interceptors: readonly NestInterceptor[];
  /** Says once, in this app's log, that a call to `route` was refused because its app is unknown. */
  reportUnknownApp(route: string): void;
}

/** The apps alive in this process, per `@Sse()` handler they serve. */
const sseApps = new AppsPerClass<SseApp>();

/**
 * Bound as method metadata to every `@Sse()` handler, once per handler and for every app of the
 * process. Method metadata is the process's, not an app's: two apps created before either listens
 * share the handler, and each reads its interceptors when it registers its routes, so an
 * interceptor of one app put there would serve the streams of both (the other app's clock and
 * lifecycle ending them, its filter answering their failures). This one finds the app of each call
 * — the one whose HTTP server accepted the request's connection, else the only app serving the
 * handler — and runs that app's interceptors around the rest (the handler's own run inside them).
 * It fails closed (`server_error`) when it cannot tell.
 */
const SSE_DISPATCH: NestInterceptor = {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const handler = context.getHandler();
    const app = appOf(context, handler);
    if (app === undefined) {
      const route = `${context.getClass().name}.${handler.name}`;
      for (const each of sseApps.of(handler)) each.reportUnknownApp(route);
      throw new ResourceNotConfiguredException();
    }
    return around(app.interceptors, context, next);
  },
};

/** `next`, inside `interceptors` (the first outermost). */
function around(interceptors: readonly NestInterceptor[], context: ExecutionContext, next: CallHandler): Observable<unknown> {
  const [first, ...rest] = interceptors;
  if (first === undefined) return next.handle();
  return first.intercept(context, { handle: () => around(rest, context, next) }) as Observable<unknown>;
}

/** The app whose server accepted the request's connection, else the only app serving `handler`. */
function appOf(context: ExecutionContext, handler: object): SseApp | undefined {
  const request = httpRequestOf<object | undefined>(context);
  const server = request === undefined ? undefined : (rawRequestOf(request).socket as { server?: object } | null | undefined)?.server;
  if (server !== undefined) {
    for (const app of sseApps.of(handler)) if (app.httpServer() === server) return app;
  }
  return sseApps.only(handler);
}

/** Puts {@link SSE_DISPATCH} first among `handler`'s interceptors (once), and counts `app` among the apps serving it until {@link leaveSseHandler}. */
export function serveSseHandler(handler: object, app: SseApp): void {
  bindOnce(INTERCEPTORS_METADATA, handler, SSE_DISPATCH, 'first');
  sseApps.add(handler, app);
}

/** `app` closed: it no longer serves `handler`'s streams (the handler keeps the module-level dispatcher). */
export function leaveSseHandler(handler: object, app: SseApp): void {
  sseApps.delete(handler, app);
}
