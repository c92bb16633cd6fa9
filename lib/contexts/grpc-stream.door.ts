import type { ExecutionContext } from '@nestjs/common';
import type { RpcException } from '@nestjs/microservices';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import { grpcCallOf, rpcRefusal } from './rpc.context.js';
import type { RawStream, StreamDoor } from './stream-expiry.interceptor.js';

/** A grpc-js server call, read by shape (`@grpc/grpc-js` is never imported). */
interface GrpcCall {
  getPeer(): unknown;
  emit(event: 'error', error: unknown): boolean;
  once(event: string, listener: () => void): unknown;
  /** Server streaming and duplex calls (`ServerWritableStream`, `ServerDuplexStream`). */
  write?: unknown;
  /** Client streaming and duplex calls (`ServerReadableStream`, `ServerDuplexStream`). */
  read?: unknown;
}

/** Unary calls (`ServerUnaryCall`) are plain event emitters: only stream calls read or write. */
function isStreamCall(call: object | undefined): call is GrpcCall {
  const candidate = call as Partial<GrpcCall> | undefined;
  return typeof candidate?.write === 'function' || typeof candidate?.read === 'function';
}

/**
 * The status a gRPC call ends with: the module's refusal (`{ code: 16, message: <fixed
 * description>, error, error_description }`, as Nest's RPC exception filter hands it on), which
 * grpc-js sends as status 16 `UNAUTHENTICATED` with the description as details.
 */
async function grpcStatus(denial: KeycardException): Promise<object> {
  return ((await rpcRefusal(denial)) as RpcException).getError() as object;
}

/**
 * A `@GrpcStreamCall` call (the handler gets `(call)` or `(call, callback)`): ended on the call
 * itself. Response streams: an `error` event, on which grpc-js sets the status and ends the call
 * (what Nest does for an Observable's error). Client streams: the unary reply callback.
 */
function rawGrpcStream(context: ExecutionContext): RawStream | undefined {
  const call = context.getArgByIndex<object | undefined>(0);
  if (!isStreamCall(call) || typeof call.getPeer !== 'function') return undefined;
  const callback = context.getArgByIndex<unknown>(1);
  return {
    end: (denial) => {
      void grpcStatus(denial).then((status) => {
        if (typeof call.write === 'function') call.emit('error', status);
        else if (typeof callback === 'function') (callback as (error: unknown) => void)(status);
      });
    },
    onClosed: (closed) => {
      // `finish`: the status was sent; `cancelled`: the client left; `close`: the stream was torn down.
      for (const event of ['finish', 'cancelled', 'close']) call.once(event, closed);
    },
  };
}

/**
 * gRPC streams (catalogue O10): server streaming `@GrpcMethod`, `@GrpcStreamMethod` (their
 * Observable result errors with the refusal, which Nest's filter turns into status 16) and
 * `@GrpcStreamCall` (the raw call is ended). Unary calls pass untouched.
 */
export const GRPC_STREAMS: StreamDoor = {
  streams: (context) => isStreamCall(grpcCallOf(context)),
  rawStream: rawGrpcStream,
  end: (subscriber, denial) => {
    void rpcRefusal(denial).then((refusal) => subscriber.error(refusal));
  },
};
