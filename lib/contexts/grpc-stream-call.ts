import type { ExecutionContext } from '@nestjs/common';

/** A grpc-js server call, read by shape (`@grpc/grpc-js` is never imported). */
export interface GrpcCall {
  getPeer(): unknown;
  emit(event: 'error', error: unknown): boolean;
  once(event: string, listener: () => void): unknown;
  /** Server streaming and duplex calls (`ServerWritableStream`, `ServerDuplexStream`). */
  write?: unknown;
  /** Client streaming and duplex calls (`ServerReadableStream`, `ServerDuplexStream`). */
  read?: unknown;
}

/** Unary calls (`ServerUnaryCall`) are plain event emitters: only stream calls read or write. */
export function isStreamCall(call: object | undefined): call is GrpcCall {
  const candidate = call as Partial<GrpcCall> | undefined;
  return typeof candidate?.write === 'function' || typeof candidate?.read === 'function';
}

/**
 * The raw call of a `@GrpcStreamCall` handler (Nest hands it `(call)` or `(call, callback)`) with
 * the reply callback of a client stream; `undefined` for every other handler, whose result Nest
 * itself turns into the call's status.
 */
export interface RawGrpcStreamCall {
  readonly call: GrpcCall;
  readonly callback?: (error: unknown) => void;
}

export function rawGrpcStreamCallOf(context: ExecutionContext): RawGrpcStreamCall | undefined {
  const call = context.getArgByIndex<object | undefined>(0);
  if (!isStreamCall(call) || typeof call.getPeer !== 'function') return undefined;
  const callback = context.getArgByIndex<unknown>(1);
  return { call, ...(typeof callback === 'function' && { callback: callback as (error: unknown) => void }) };
}

/** Calls already ended here: Nest runs the guards of a `@GrpcStreamCall` twice, and a status is sent once. */
const ended = new WeakSet<object>();

/**
 * Ends a raw stream call with `status` (`{ code, message, metadata? }`: grpc-js sends `code`, the
 * message as details and `metadata` as trailers). Client streams: the unary reply callback.
 * Response streams: an `error` event, on which grpc-js sets the status and ends the call (what Nest
 * does for an Observable's error). A second end of the same call does nothing.
 */
export function endRawGrpcStreamCall({ call, callback }: RawGrpcStreamCall, status: object): void {
  if (ended.has(call)) return;
  ended.add(call);
  // Nest passes a callback to client streams only; grpc-js ≥ 1.10 serves them on a duplex call too.
  if (callback !== undefined) callback(status);
  else if (typeof call.write === 'function') call.emit('error', status);
}
