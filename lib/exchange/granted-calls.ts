import type { CallHandler, ExecutionContext } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Observable } from 'rxjs';
import { graphqlCallKey } from '../contexts/graphql.context.js';
import type { AccessContext } from './access-context.js';
import { httpRequestOf } from '../contexts/http-arguments.js';

/** Where the access context of a call with a holder lives; a symbol no client input can set. */
const ACCESS = Symbol('keycard.access-context');

/** A call without a holder, and what its grant obtained. */
interface GrantedCall {
  /** The call's arguments: its parameter decorators see copies of this list, with the same items. */
  readonly args: readonly unknown[];
  readonly access: AccessContext;
}

/** The granted call whose handler runs now (see {@link handleGranted}). */
const grantedCalls = new AsyncLocalStorage<GrantedCall>();

/**
 * The object a call's grant is kept on, shared by its interceptors and parameter decorators: the
 * request over HTTP; for a GraphQL field, the field's own resolve info, since the fields of one
 * operation share the request and each has its own `@Grant()`. Undefined for a call without one of
 * its own: a gateway message shares its socket with the other messages, and Nest hands parameter
 * decorators a copy of the argument list, so nothing of such a call's own survives until `@Access()`.
 */
function holderOf(context: ExecutionContext): { [ACCESS]?: AccessContext } | undefined {
  switch (context.getType<string>()) {
    case 'http':
      return httpRequestOf<object>(context);
    case 'graphql':
      return graphqlCallKey(context);
    default:
      return undefined;
  }
}

/** True when every argument of `a` is the one of `b` at the same place: the same call. */
function sameCall(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((arg, index) => arg === b[index]);
}

/** The access context the grant of the call in `context` left, if any. @internal */
export function grantedAccessOf(context: ExecutionContext): AccessContext | undefined {
  const holder = holderOf(context);
  if (holder !== undefined) return holder[ACCESS];
  const call = grantedCalls.getStore();
  return call !== undefined && sameCall(call.args, context.getArgs()) ? call.access : undefined;
}

/**
 * Runs the handler of the call in `context` with `access` for its `@Access()`: kept on the call's
 * holder, or, for a call without one (gateway messages, microservice and MCP tool calls), for the
 * handler's own run (Node's `AsyncLocalStorage`, checked against the call's arguments, so another
 * call started from that handler never sees it).
 * @internal
 */
export function handleGranted(context: ExecutionContext, access: AccessContext, next: CallHandler): Observable<unknown> {
  const holder = holderOf(context);
  if (holder !== undefined) {
    holder[ACCESS] = access;
    return next.handle();
  }
  const call: GrantedCall = { args: context.getArgs(), access };
  // The handler's start (`handle()`) and its subscription both run inside the store, whichever of
  // the two a Nest version defers the handler (and its parameter decorators) to.
  return new Observable((subscriber) => grantedCalls.run(call, () => next.handle().subscribe(subscriber)));
}
