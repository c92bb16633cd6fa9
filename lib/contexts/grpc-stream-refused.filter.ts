import { type ArgumentsHost, Catch, type ExceptionFilter, Injectable } from '@nestjs/common';
import { type Observable, of } from 'rxjs';

/**
 * Thrown by the guard for a refused `@GrpcStreamCall` once its raw call has been ended with the
 * refusal's status and trailers: Nest neither ends such a call nor handles the rejection of its
 * handler (it would reach the process as an unhandled rejection, and the client would wait for its
 * deadline). Never sent to a client; carries no token.
 */
export class GrpcStreamCallRefused extends Error {
  constructor() {
    super('gRPC stream call refused; its status was sent on the call');
    this.name = 'GrpcStreamCallRefused';
  }
}

/**
 * Answers {@link GrpcStreamCallRefused} with an Observable of one `undefined`: the call has its
 * status already, so Nest's handler settles instead of rejecting. Registered globally by
 * `KeycardModule`; it handles nothing else. (An app's own catch-all filter placed before it
 * still sees the error: the call is ended all the same.)
 */
@Catch(GrpcStreamCallRefused)
@Injectable()
export class GrpcStreamCallRefusedFilter implements ExceptionFilter<GrpcStreamCallRefused> {
  catch(error: GrpcStreamCallRefused, host: ArgumentsHost): Observable<undefined> {
    if (host.getType() !== 'rpc') throw error;
    return of(undefined);
  }
}
