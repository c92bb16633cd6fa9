import { Inject, Injectable, type NestInterceptor, type OnModuleDestroy } from '@nestjs/common';
import { INTERCEPTORS_METADATA, SSE_METADATA } from '@nestjs/common/constants.js';
import { HttpAdapterHost, MetadataScanner, ModulesContainer } from '@nestjs/core';
import { CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import { checkArgumentsKnownWhenJudged } from '../decision/policy/call-arguments.js';
import { TokenExchangeExceptionFilter } from '../exchange/token-exchange.filter.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { GRPC_STREAMS } from './grpc-stream.door.js';
import { KeycardContexts } from './keycard-contexts.js';
import { SSE_STREAMS } from './sse-stream.door.js';
import { leaveStreamHandler, serveStreamHandler, type StreamApp, type StreamHandlerApp } from './stream-apps.js';
import { StreamExchangeFailures } from './stream-exchange-failures.js';
import { type StreamDoor, StreamExpiryInterceptor } from './stream-expiry.interceptor.js';

/** `@nestjs/microservices`' pattern metadata key (read by value: the package is an optional peer). */
const PATTERN_METADATA = 'microservices:pattern';
/** `@nestjs/graphql`'s resolver type key and a `@Subscription()`'s value (read by value: an optional peer). */
const RESOLVER_TYPE_METADATA = 'graphql:resolver_type';
const SUBSCRIPTION = 'Subscription';
/** `@nestjs/graphql`'s key of `@ResolveField()` methods. */
const RESOLVER_PROPERTY_METADATA = 'graphql:resolve_property';

/**
 * A subscription root field's resolver as `@nestjs/graphql` tells one (`extractMetadata`): the
 * method's own type, else its class's — a schema-first `@Resolver('Subscription')` class makes
 * every method a subscription without a method-level `@Subscription()` — and not a field resolver.
 */
function isSubscriptionResolver(handler: object, type: object): boolean {
  const resolverType = (Reflect.getMetadata(RESOLVER_TYPE_METADATA, handler) as unknown) || (Reflect.getMetadata(RESOLVER_TYPE_METADATA, type) as unknown);
  return resolverType === SUBSCRIPTION && Reflect.getMetadata(RESOLVER_PROPERTY_METADATA, handler) !== true;
}

/** `@GrpcMethod`, `@GrpcStreamMethod` and `@GrpcStreamCall` patterns are `{ service, rpc, streaming }`. */
function isGrpcHandler(handler: object): boolean {
  const patterns = Reflect.getMetadata(PATTERN_METADATA, handler) as unknown;
  return Array.isArray(patterns) && patterns.some((p) => typeof p === 'object' && p !== null && 'rpc' in p && 'streaming' in p);
}

/**
 * Ends streamed calls at expiry (catalogue O10, O11; STYLE 27): while the app is created, puts a
 * {@link StreamExpiryInterceptor} first among the method interceptors of every handler that may
 * stream (Nest `@Sse()` routes and gRPC handlers: whether a `@GrpcMethod` streams is the proto's
 * to say, known per call), before Nest reads them when it registers routes, resolvers and
 * microservice handlers. `@Sse()` routes and GraphQL `@Subscription()` resolvers also get
 * {@link StreamExchangeFailures} (inside it): a failed token exchange out of their stream is
 * answered as the exchange filter answers it elsewhere (Q8; gRPC streams reach Nest's filters
 * already). Other handlers get nothing, so an ordinary request costs what it did.
 *
 * Method metadata is the process's, not an app's (several apps of one process share a handler):
 * - an `@Sse()` handler and a subscription resolver get one module-level dispatcher, bound once,
 *   that runs the interceptors of the app whose server accepted the call's connection
 *   (`stream-apps.ts`); every app registers itself while it is created and unregisters when it
 *   closes, so two apps created before either listens each end their streams by their own clock and
 *   answer them with their own filter;
 * - gRPC handlers still get the app's own interceptor, in place of one left by an app created
 *   earlier in the process, taken off when it closes (a gRPC call names no server Nest exposes to
 *   match an app with): an app must start (register its handlers) before the next sharing them is
 *   created.
 */
@Injectable()
export class KeycardStreams implements OnModuleDestroy {
  private readonly interceptors: NestInterceptor[] = [];
  private readonly handlers = new Set<object>();
  /** The handlers this app serves through the module-level dispatcher, and what it registered for each (unregistered by that reference). */
  private readonly dispatched = new Map<object, StreamHandlerApp>();
  private unknownAppReported = false;

  constructor(
    modules: ModulesContainer,
    scanner: MetadataScanner,
    contexts: KeycardContexts,
    lifecycle: CarrierLifecycle,
    filter: TokenExchangeExceptionFilter,
    adapterHost: HttpAdapterHost,
    @Inject(KEYCARD_OPTIONS) options: KeycardOptions,
  ) {
    const failures = this.own(new StreamExchangeFailures(filter));
    const app: StreamApp = {
      httpServer: () => adapterHost.httpAdapter?.getHttpServer() as object | undefined,
      requestOf: (context) => {
        const kind = contexts.kindOf(context);
        return kind?.httpRequest(context, kind.carrier(context));
      },
      reportUnknownApp: (route) => {
        if (this.unknownAppReported) return;
        this.unknownAppReported = true;
        options.logger.error(
          `Keycard refused a stream of ${route}: several apps in this process serve it and the request did not come through the HTTP server of one of them, so its app is unknown. ` +
            'Serve each app\'s @Sse() routes and subscriptions from the server Nest listens on (app.listen(), or app.init() with app.getHttpServer()).',
        );
      },
    };
    const sse = { app, interceptors: [this.interceptorFor(SSE_STREAMS, contexts, lifecycle), failures] };
    const subscriptions = { app, interceptors: [failures] };
    const grpc = [this.interceptorFor(GRPC_STREAMS, contexts, lifecycle)];
    for (const module of modules.values()) {
      for (const wrapper of module.controllers.values()) {
        const prototype = prototypeOf(wrapper.metatype);
        if (prototype === undefined) continue;
        for (const name of scanner.getAllMethodNames(prototype)) {
          const handler = prototype[name];
          if (typeof handler !== 'function') continue;
          if (Reflect.getMetadata(SSE_METADATA, handler) === true) this.dispatch(handler, sse);
          else if (isGrpcHandler(handler)) {
            checkArgumentsKnownWhenJudged(handler, wrapper.metatype as object, `${(wrapper.metatype as { name: string }).name}.${name}`);
            this.putFirst(handler, grpc);
          }
        }
      }
      // GraphQL resolvers are providers; their subscriptions end at expiry with their connection (KeycardConnections).
      for (const wrapper of module.providers.values()) {
        const prototype = prototypeOf(wrapper.metatype);
        if (prototype === undefined) continue;
        for (const name of scanner.getAllMethodNames(prototype)) {
          const handler = prototype[name];
          if (typeof handler === 'function' && isSubscriptionResolver(handler, wrapper.metatype as object)) this.dispatch(handler, subscriptions);
        }
      }
    }
  }

  /** Takes this app's interceptors off the handlers (routes already registered keep theirs). */
  onModuleDestroy(): void {
    for (const [handler, served] of this.dispatched) leaveStreamHandler(handler, served);
    for (const handler of this.handlers) {
      const current = (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [];
      Reflect.defineMetadata(INTERCEPTORS_METADATA, current.filter((i) => !this.interceptors.includes(i as NestInterceptor)), handler);
    }
  }

  /** Counts this app among those serving `handler` (the dispatcher bound once, first, so the handler's own interceptors run inside it). */
  private dispatch(handler: object, served: StreamHandlerApp): void {
    if (this.dispatched.has(handler)) return; // inherited by several classes
    serveStreamHandler(handler, served);
    this.dispatched.set(handler, served);
  }

  private interceptorFor(door: StreamDoor, contexts: KeycardContexts, lifecycle: CarrierLifecycle): StreamExpiryInterceptor {
    return this.own(new StreamExpiryInterceptor(contexts, lifecycle, door));
  }

  private own<T extends NestInterceptor>(interceptor: T): T {
    this.interceptors.push(interceptor);
    return interceptor;
  }

  /**
   * First, so the handler's own interceptors run inside them: none can hold a stream open past
   * expiry, and a failed exchange coming out of any of them is answered.
   */
  private putFirst(handler: object, interceptors: readonly NestInterceptor[]): void {
    if (this.handlers.has(handler)) return; // inherited by several controllers
    const current = (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [];
    const others = current.filter((i) => !(i instanceof StreamExpiryInterceptor || i instanceof StreamExchangeFailures));
    Reflect.defineMetadata(INTERCEPTORS_METADATA, [...interceptors, ...others], handler);
    this.handlers.add(handler);
  }
}

/** The prototype of a provider's or controller's class, if it is one (a factory or value provider has none to scan). */
function prototypeOf(metatype: unknown): Record<string, unknown> | undefined {
  return (metatype as { prototype?: Record<string, unknown> } | null | undefined)?.prototype;
}
