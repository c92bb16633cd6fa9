import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import { INTERCEPTORS_METADATA } from '@nestjs/common/constants.js';
import type { IncomingMessage } from 'node:http';
import type { Observable } from 'rxjs';
import { ResourceNotConfiguredException } from '../resource-server/keycard.exceptions.js';
import { AppsPerClass, bindOnce } from './apps-per-class.js';

/** One app's part in the stream handlers it serves (`KeycardStreams`). */
export interface StreamApp {
  /** The Node server the app listens on (`HttpAdapterHost.httpAdapter.getHttpServer()`); `undefined` before the adapter has one. */
  httpServer(): object | undefined;
  /** The Node request of a call (an `@Sse()` route's; a subscription's upgrade request), as the app's contexts tell it. */
  requestOf(context: ExecutionContext): IncomingMessage | undefined;
  /** Says once, in this app's log, that a call to `handler` was refused because its app is unknown. */
  reportUnknownApp(handler: string): void;
}

/** An app serving one handler, with its interceptors for that handler's calls, outermost first. */
export interface StreamHandlerApp {
  readonly app: StreamApp;
  readonly interceptors: readonly NestInterceptor[];
}

/** The apps alive in this process, per stream handler they serve. */
const streamApps = new AppsPerClass<StreamHandlerApp>();

/**
 * Bound as method metadata to every `@Sse()` handler and GraphQL `@Subscription()` resolver, once
 * per handler and for every app of the process. Method metadata is the process's, not an app's: two
 * apps created before either listens share the handler, and each reads its interceptors when it
 * registers its routes and resolvers, so an interceptor of one app put there would serve the
 * streams of both (the other app's clock and lifecycle ending them, its filter answering their
 * failures). This one finds the app of each call — the one whose HTTP server accepted the
 * request's connection (an SSE request, a subscription's upgrade request), else the only app
 * serving the handler — and runs that app's interceptors around the rest (the handler's own run
 * inside them). It fails closed (`server_error`, said in the apps' logs) when it cannot tell.
 */
const STREAM_DISPATCH: NestInterceptor = {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const handler = context.getHandler();
    const served = servingApp(context, handler);
    if (served === undefined) {
      const name = `${context.getClass().name}.${handler.name}`;
      for (const { app } of streamApps.of(handler)) app.reportUnknownApp(name);
      throw new ResourceNotConfiguredException();
    }
    return around(served.interceptors, context, next);
  },
};

/** `next`, inside `interceptors` (the first outermost). */
function around(interceptors: readonly NestInterceptor[], context: ExecutionContext, next: CallHandler): Observable<unknown> {
  const [first, ...rest] = interceptors;
  if (first === undefined) return next.handle();
  return first.intercept(context, { handle: () => around(rest, context, next) }) as Observable<unknown>;
}

/** The app whose server accepted the call's connection, else the only app serving `handler`. */
function servingApp(context: ExecutionContext, handler: object): StreamHandlerApp | undefined {
  const only = streamApps.only(handler);
  if (only !== undefined) return only;
  let server: object | undefined;
  for (const served of streamApps.of(handler)) {
    // Any app's contexts tell where a call's request is (the same rules in every app): asked once.
    server ??= (served.app.requestOf(context)?.socket as { server?: object } | null | undefined)?.server ?? NO_SERVER;
    if (served.app.httpServer() === server) return served;
  }
  return undefined;
}

/** A call whose request came through no server (none to match an app's). */
const NO_SERVER = {};

/** Puts {@link STREAM_DISPATCH} first among `handler`'s interceptors (once), and counts `served` among the apps serving it until {@link leaveStreamHandler}. */
export function serveStreamHandler(handler: object, served: StreamHandlerApp): void {
  bindOnce(INTERCEPTORS_METADATA, handler, STREAM_DISPATCH, 'first');
  streamApps.add(handler, served);
}

/** The app of `served` closed: it no longer serves `handler`'s calls (the handler keeps the module-level dispatcher). */
export function leaveStreamHandler(handler: object, served: StreamHandlerApp): void {
  streamApps.delete(handler, served);
}
