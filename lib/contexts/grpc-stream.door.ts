import type { ExecutionContext } from '@nestjs/common';
import type { RpcException } from '@nestjs/microservices';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import { endRawGrpcStreamCall, isStreamCall, rawGrpcStreamCallOf } from './grpc-stream-call.js';
import { grpcCallOf, rpcRefusal } from './rpc.context.js';
import type { RawStream, StreamDoor } from './stream-expiry.interceptor.js';

/**
 * The status a gRPC call ends with: the module's refusal (`{ code: 16, message: <fixed
 * description>, error, error_description }`, as Nest's RPC exception filter hands it on), which
 * grpc-js sends as status 16 `UNAUTHENTICATED` with the description as details.
 */
async function grpcStatus(denial: KeycardException): Promise<object> {
  return ((await rpcRefusal(denial)) as RpcException).getError() as object;
}

/** A `@GrpcStreamCall` call (the handler gets `(call)` or `(call, callback)`): ended on the call itself. */
function rawGrpcStream(context: ExecutionContext): RawStream | undefined {
  const raw = rawGrpcStreamCallOf(context);
  if (raw === undefined) return undefined;
  return {
    end: (denial) => {
      void grpcStatus(denial).then((status) => endRawGrpcStreamCall(raw, status));
    },
    onClosed: (closed) => {
      // `finish`: the status was sent; `cancelled`: the client left; `close`: the stream was torn down.
      for (const event of ['finish', 'cancelled', 'close']) raw.call.once(event, closed);
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
