import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import { Observable, type Subscriber } from 'rxjs';
import type { CarrierEndReason, CarrierLifecycle } from '../decision/carrier-lifecycle.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { isVerifiedAgent } from '../resource-server/access-token-rules.js';
import { InvalidTokenException, type KeycardException } from '../resource-server/keycard.exceptions.js';
import type { KeycardContexts } from './keycard-contexts.js';

/** A streamed call its handler drives itself (a raw `@GrpcStreamCall` call): the door ends it directly. */
export interface RawStream {
  /** Ends the call with `denial`, in the door's shape (gRPC: status 16 with the fixed details). */
  end(denial: KeycardException): void;
  /** Calls `closed` once the call ends on its own (finished, cancelled by the client). */
  onClosed(closed: () => void): void;
}

/**
 * One door whose calls stream (gRPC, Nest `@Sse()`): which of its calls stream and how each ends
 * when its token expires (decision Q20). The binding to the principal and the timer are
 * {@link CarrierLifecycle}'s, the same for every carrier.
 */
export interface StreamDoor {
  /** True when the handler's result for this call is a stream (a unary gRPC call's is not). */
  streams(context: ExecutionContext): boolean;
  /** The raw call when the handler drives the stream itself, else `undefined` (the result is the stream). */
  rawStream?(context: ExecutionContext): RawStream | undefined;
  /**
   * Ends the handler's stream, already unsubscribed from its source, in the door's shape: a final
   * SSE `error` event then the end of the response; a gRPC error (status 16, fixed details).
   */
  end(subscriber: Subscriber<unknown>, denial: KeycardException): void;
}

/** What a client is told when its carrier ends for `reason`: the refusal its next call would get. */
export function denialOf(reason: CarrierEndReason): KeycardException {
  switch (reason) {
    case 'expired':
      return new InvalidTokenException('expired');
    case 'revoked':
      return new InvalidTokenException('revoked');
  }
}

/**
 * Binds a streamed call the guard admitted to the agent it admitted (on the call's carrier, as for
 * `@Agent()`) through the one {@link CarrierLifecycle}, so the stream ends at `exp` + tolerance
 * even while the handler keeps producing (catalogue O10, O11). Put by {@link KeycardStreams} on
 * streaming handlers only: ordinary routes never run it. A public or unstreamed call passes
 * through untouched, and a stream that ends first releases its binding.
 */
export class StreamExpiryInterceptor implements NestInterceptor {
  constructor(
    private readonly contexts: KeycardContexts,
    private readonly lifecycle: CarrierLifecycle,
    private readonly door: StreamDoor,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const agent = this.admittedAgent(context);
    // No verified agent: a @Public() handler, or a door the module's guard does not run on. Nothing expires.
    if (agent === undefined) return next.handle();
    const raw = this.door.rawStream?.(context);
    if (raw !== undefined) {
      const binding = this.lifecycle.bind({ agent, end: (reason) => raw.end(denialOf(reason)) });
      raw.onClosed(() => binding.close());
      return next.handle();
    }
    return this.door.streams(context) ? this.untilExpiry(next.handle(), agent) : next.handle();
  }

  private admittedAgent(context: ExecutionContext): AgentContext | undefined {
    const user = this.contexts.kindOf(context)?.carrier(context).user;
    return isVerifiedAgent(user) ? user : undefined;
  }

  /** `source`, until the agent's token expires: then the source is dropped and the door ends the stream. */
  private untilExpiry(source: Observable<unknown>, agent: AgentContext): Observable<unknown> {
    return new Observable((subscriber) => {
      // A plain observer, not `subscriber` itself: unsubscribing the source must leave `subscriber` open for the door's end.
      const subscription = source.subscribe({
        next: (value) => subscriber.next(value),
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
      const binding = this.lifecycle.bind({
        agent,
        end: (reason) => {
          subscription.unsubscribe();
          this.door.end(subscriber, denialOf(reason));
        },
      });
      return () => {
        binding.close();
        subscription.unsubscribe();
      };
    });
  }
}
