import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { INTERCEPTORS_METADATA, SSE_METADATA } from '@nestjs/common/constants.js';
import { MetadataScanner, ModulesContainer } from '@nestjs/core';
import { CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import { checkArgumentsKnownWhenJudged } from '../decision/policy/call-arguments.js';
import { GRPC_STREAMS } from './grpc-stream.door.js';
import { KeycardContexts } from './keycard-contexts.js';
import { SSE_STREAMS } from './sse-stream.door.js';
import { type StreamDoor, StreamExpiryInterceptor } from './stream-expiry.interceptor.js';

/** `@nestjs/microservices`' pattern metadata key (read by value: the package is an optional peer). */
const PATTERN_METADATA = 'microservices:pattern';

/** `@GrpcMethod`, `@GrpcStreamMethod` and `@GrpcStreamCall` patterns are `{ service, rpc, streaming }`. */
function isGrpcHandler(handler: object): boolean {
  const patterns = Reflect.getMetadata(PATTERN_METADATA, handler) as unknown;
  return Array.isArray(patterns) && patterns.some((p) => typeof p === 'object' && p !== null && 'rpc' in p && 'streaming' in p);
}

/**
 * Ends streamed calls at expiry (catalogue O10, O11; STYLE 27): while the app is created, puts a
 * {@link StreamExpiryInterceptor} first among the method interceptors of every handler that may
 * stream (Nest `@Sse()` routes and gRPC handlers: whether a `@GrpcMethod` streams is the proto's
 * to say, known per call), before Nest reads them when it registers routes and microservice
 * handlers. Other handlers get nothing, so an ordinary request costs what it did. Each app puts its
 * own interceptor (its lifecycle, its clock) in place of one left by an app created earlier in the
 * process, and takes it off when it closes.
 */
@Injectable()
export class KeycardStreams implements OnModuleDestroy {
  private readonly interceptors: StreamExpiryInterceptor[] = [];
  private readonly handlers = new Set<object>();

  constructor(modules: ModulesContainer, scanner: MetadataScanner, contexts: KeycardContexts, lifecycle: CarrierLifecycle) {
    const sse = this.interceptorFor(SSE_STREAMS, contexts, lifecycle);
    const grpc = this.interceptorFor(GRPC_STREAMS, contexts, lifecycle);
    for (const module of modules.values()) {
      for (const wrapper of module.controllers.values()) {
        const prototype = (wrapper.metatype as { prototype?: Record<string, unknown> } | null)?.prototype;
        if (prototype === undefined) continue;
        for (const name of scanner.getAllMethodNames(prototype)) {
          const handler = prototype[name];
          if (typeof handler !== 'function') continue;
          if (Reflect.getMetadata(SSE_METADATA, handler) === true) this.putFirst(handler, sse);
          else if (isGrpcHandler(handler)) {
            checkArgumentsKnownWhenJudged(handler, wrapper.metatype as object, `${(wrapper.metatype as { name: string }).name}.${name}`);
            this.putFirst(handler, grpc);
          }
        }
      }
    }
  }

  /** Takes this app's interceptors off the handlers (routes already registered keep theirs). */
  onModuleDestroy(): void {
    for (const handler of this.handlers) {
      const current = (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [];
      Reflect.defineMetadata(INTERCEPTORS_METADATA, current.filter((i) => !this.interceptors.includes(i as StreamExpiryInterceptor)), handler);
    }
  }

  private interceptorFor(door: StreamDoor, contexts: KeycardContexts, lifecycle: CarrierLifecycle): StreamExpiryInterceptor {
    const interceptor = new StreamExpiryInterceptor(contexts, lifecycle, door);
    this.interceptors.push(interceptor);
    return interceptor;
  }

  /** First, so the handler's own interceptors run inside it and cannot hold a stream open past expiry. */
  private putFirst(handler: object, interceptor: StreamExpiryInterceptor): void {
    if (this.handlers.has(handler)) return; // inherited by several controllers
    const current = (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [];
    const others = current.filter((i) => !(i instanceof StreamExpiryInterceptor));
    Reflect.defineMetadata(INTERCEPTORS_METADATA, [interceptor, ...others], handler);
    this.handlers.add(handler);
  }
}
