import type { ExecutionContext } from '@nestjs/common';
import type { RpcException } from '@nestjs/microservices';
import { isIP } from 'node:net';
import { credentialsScheme } from '../dpop/authorization-scheme.js';
import { type AcceptedSchemes, BEARER_ONLY, parseBearerCredentials } from '../resource-server/bearer-token.extractor.js';
import type { KeycardException } from '../resource-server/keycard.exceptions.js';
import type { CallKind, Carrier, Refusal, RequestLine } from './call-kind.interface.js';
import { endRawGrpcStreamCall, rawGrpcStreamCallOf } from './grpc-stream-call.js';
import { GrpcStreamCallRefused } from './grpc-stream-refused.filter.js';
import { loadMicroservices } from './optional-peers.js';
import { errorFields } from './ws.context.js';

/**
 * Reads the token of a microservice call whose transport has no metadata (TCP, Redis, NATS without
 * headers…): the app decides where its token travels. Return `undefined` when there is none.
 * @publicApi
 */
export type RpcTokenExtractor = (context: ExecutionContext) => string | undefined;

/** gRPC `Metadata`, read by shape (`@grpc/grpc-js` is never imported). */
interface GrpcMetadata {
  get(key: string): unknown[];
  getMap(): unknown;
}

function isGrpcMetadata(value: unknown): value is GrpcMetadata {
  return typeof (value as GrpcMetadata | undefined)?.get === 'function' && typeof (value as GrpcMetadata).getMap === 'function';
}

/** The IP address of a gRPC peer string, without scheme prefix, brackets or port; `undefined` for others (`unknown`, a Unix socket). */
function peerAddress(peer: string): string | undefined {
  const bare = peer.replace(/^ipv[46]:/, '');
  // grpc-js writes `${address}:${port}` (IPv6 unbracketed), so the port goes first.
  const withoutPort = bare.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (isIP(withoutPort) !== 0) return withoutPort;
  return isIP(bare) !== 0 ? bare : undefined;
}

/** The text values of a metadata key (binary `-bin` values are Buffers). */
function stringValues(metadata: GrpcMetadata, key: string): string[] {
  return metadata.get(key).filter((v): v is string => typeof v === 'string');
}

/** gRPC status codes (grpc/doc/statuscodes.md) for the refusals' HTTP statuses; any other is 13 INTERNAL (500, 502). */
const GRPC_STATUS: Record<number, number> = { 400: 3, 401: 16, 403: 7, 429: 8, 503: 14, 504: 4 };

/** A gRPC server call as grpc-js hands it to a handler, read by shape. */
export interface GrpcServerCall {
  getPeer(): unknown;
  /** The HTTP/2 `:path`, `/package.Service/Method` (grpc-js ≥ 1.10). */
  getPath?(): unknown;
}

/**
 * The grpc-js call of a gRPC handler: the first argument of a `@GrpcStreamCall` handler, the third
 * of the others (`(data, metadata, call)`); `undefined` outside gRPC (TCP, Redis…).
 */
export function grpcCallOf(context: ExecutionContext): GrpcServerCall | undefined {
  const first = context.getArgByIndex<Partial<GrpcServerCall> | undefined>(0);
  if (typeof first?.getPeer === 'function') return first as GrpcServerCall;
  const third = context.getArgByIndex<Partial<GrpcServerCall> | undefined>(2);
  return typeof third?.getPeer === 'function' ? (third as GrpcServerCall) : undefined;
}

/**
 * The `RpcException` a refusal travels as to a microservice client:
 * `{ code, message, error, error_description, scope?, metadata? }`, `code` the gRPC status and
 * `message` the fixed description (grpc-js sends it as the status details, and `metadata` as the
 * call's trailing metadata). `requiredScopes` space-joined.
 */
export async function rpcRefusal(denial: KeycardException, requiredScopes?: string, metadata?: object): Promise<Error> {
  const { RpcException } = await loadMicroservices();
  const fields = errorFields(denial, requiredScopes);
  return new RpcException({ code: GRPC_STATUS[denial.getStatus()] ?? 13, message: fields.error_description, ...fields, ...(metadata && { metadata }) });
}

/**
 * The refusal's headers (the RFC 6750 challenge, `Retry-After`) as gRPC trailing metadata, so a
 * gRPC client reads the OAuth `error` and the `scope` as an HTTP client does (catalogue O23): the
 * status and details alone say neither. Built with the class of the call's own metadata: grpc-js
 * sends only an instance of its `Metadata` (it is never imported here).
 */
function trailersOf(metadata: GrpcMetadata, headers: Readonly<Record<string, string>>): object {
  const trailers = new (metadata.constructor as new () => { set(key: string, value: string): void })();
  for (const [name, value] of Object.entries(headers)) trailers.set(name.toLowerCase(), value);
  return trailers;
}

/**
 * Microservice handlers (`@MessagePattern`, `@GrpcMethod`), reached directly or with
 * `inheritAppConfig: true`. gRPC: the token is the `authorization` metadata (`Bearer <token>`, or
 * `DPoP <token>` with a `dpop` proof when DPoP is on: a gRPC call is an HTTP/2 POST to its `:path`).
 * Other transports carry no metadata: refused unless the app supplies `rpcTokenExtractor`.
 * Refusals are an `RpcException` `{ code, message, error, error_description, scope? }` (`code` the
 * gRPC status: UNAUTHENTICATED 16, PERMISSION_DENIED 7, INVALID_ARGUMENT 3, UNAVAILABLE 14; a failed
 * token exchange also INTERNAL 13 and DEADLINE_EXCEEDED 4).
 */
export class RpcCallKind implements CallKind {
  readonly name = 'rpc';
  readonly sharedCarrier = false;

  /** Every rpc call the MCP kind, asked before it, did not take. */
  accepts(type: string): boolean {
    return type === 'rpc';
  }

  /** @param schemes the schemes of gRPC `authorization` metadata read as credentials (`DPoP` when it is on). */
  constructor(
    private readonly extractor: RpcTokenExtractor | undefined,
    private readonly schemes: AcceptedSchemes = BEARER_ONLY,
  ) {}

  carrier(context: ExecutionContext): Carrier {
    // `@GrpcStreamCall` handlers get `(call, callback?)`: no metadata argument, it is on the call.
    const call = context.getArgByIndex<{ metadata?: unknown; getPeer?: unknown } | undefined>(0);
    if (typeof call?.getPeer === 'function' && isGrpcMetadata(call.metadata)) return call.metadata;
    const rpc = context.switchToRpc();
    return (rpc.getContext<Carrier | undefined>() ?? rpc.getData<Carrier>() ?? {}) as Carrier;
  }

  httpRequest(): undefined {
    return undefined;
  }

  httpResponse(): undefined {
    return undefined;
  }

  /** gRPC: `POST` to the call's `:path`, its credentials' scheme and `dpop` metadata; none for other transports. */
  requestLine(context: ExecutionContext, carrier: Carrier): RequestLine | undefined {
    const path = grpcCallOf(context)?.getPath?.();
    if (!isGrpcMetadata(carrier) || typeof path !== 'string') return undefined;
    return { method: 'POST', path, scheme: credentialsScheme(stringValues(carrier, 'authorization')[0]), proofs: stringValues(carrier, 'dpop') };
  }

  /** gRPC: the call's peer address (grpc-js: `127.0.0.1:5000`, `::1:5000`, older `ipv4:…`); TCP: the socket's remote address. */
  clientAddress(context: ExecutionContext, carrier: Carrier): string | undefined {
    const peer = grpcCallOf(context)?.getPeer();
    if (typeof peer === 'string') return peerAddress(peer);
    const socket = (carrier as { getSocketRef?: () => { netSocket?: { remoteAddress?: string } } | undefined }).getSocketRef?.();
    return socket?.netSocket?.remoteAddress;
  }

  isConnection(): boolean {
    return false;
  }

  connectionAgent(): undefined {
    return undefined;
  }

  token(context: ExecutionContext, carrier: Carrier): string | undefined {
    if (isGrpcMetadata(carrier)) {
      const values = stringValues(carrier, 'authorization');
      if (values.length > 0 || this.extractor === undefined) return parseBearerCredentials(values, this.schemes);
    }
    return this.extractor?.(context);
  }

  /**
   * A `@GrpcStreamCall` is ended here with the refusal's status and trailers (Nest would leave its
   * raw call open), and the guard throws a {@link GrpcStreamCallRefused} that the module's filter
   * settles; every other call's `RpcException` becomes its status in Nest.
   */
  async refuse(pending: Refusal): Promise<Error> {
    const { denial, context, carrier, requiredScopes } = pending;
    // The challenge is built for gRPC's trailers only: a TCP refusal has nowhere to put it.
    const refusal = await rpcRefusal(denial, requiredScopes, isGrpcMetadata(carrier) ? trailersOf(carrier, pending.headers) : undefined);
    const raw = rawGrpcStreamCallOf(context);
    if (raw === undefined) return refusal;
    endRawGrpcStreamCall(raw, (refusal as RpcException).getError() as object);
    return new GrpcStreamCallRefused();
  }

  describe(context: ExecutionContext): string {
    return `rpc ${context.getClass().name}.${context.getHandler().name}`;
  }
}
