import type { DiscoveryService } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { KEYCARD_PUBLIC, KEYCARD_SCOPES } from '../keycard.constants.js';

type Target = object;
type Class = abstract new (...args: never[]) => unknown;

/** A `@Public()` / `@RequireScopes()` declaration found on one target: a method or a class. */
export interface Declaration {
  readonly isPublic: boolean;
  readonly scopes: readonly string[] | undefined;
}

const NOT_DECLARED: Declaration = { isPublic: false, scopes: undefined };

/**
 * The nearest declaration of a handler: its method, then its class and each base class in turn
 * (catalogue Q13). Reads metadata only and remembers nothing, so it is safe before the app's
 * `init()` (the OpenAPI description reads it then; the guard's registry caches what it computes).
 * @throws Error when one target declares both `@Public()` and `@RequireScopes()`.
 */
export function nearestDeclaration(handler: Target, type: Target, name: string): Declaration {
  const onMethod = declarationOn(handler, name);
  if (onMethod !== undefined) return onMethod;
  for (let base: unknown = type; typeof base === 'function' && base !== Function.prototype; base = Object.getPrototypeOf(base)) {
    const onClass = declarationOn(base, `${base.name} (handler ${name})`);
    if (onClass !== undefined) return onClass;
  }
  return NOT_DECLARED;
}

/**
 * The declaration on one target itself, if any.
 * @throws Error naming `where` when the target declares both `@Public()` and `@RequireScopes()`.
 */
export function declarationOn(target: Target, where: string): Declaration | undefined {
  const isPublic = Reflect.getOwnMetadata(KEYCARD_PUBLIC, target) === true;
  const scopes = Reflect.getOwnMetadata(KEYCARD_SCOPES, target) as readonly string[] | undefined;
  if (isPublic && scopes !== undefined) {
    throw new Error(
      `KeycardModule: @Public() and @RequireScopes() are both declared on ${where}; keep one ` +
        '(the nearest declaration wins: method over class, subclass over base class)',
    );
  }
  if (isPublic) return { isPublic, scopes: undefined };
  return scopes === undefined ? undefined : { isPublic: false, scopes };
}

/** The class of a controller or provider, when it has one whose methods may be handlers. */
export function classOf(wrapper: InstanceWrapper): Class | undefined {
  const type = wrapper.metatype as unknown;
  // Factory providers have a function as metatype that is not their class.
  if (typeof type !== 'function' || wrapper.inject || !type.prototype) return undefined;
  return type as Class;
}

/** Every class of the app whose methods may carry declarations: controllers, then providers. */
export function declaringClasses(discovery: DiscoveryService): Class[] {
  return [...discovery.getControllers(), ...discovery.getProviders()].flatMap((wrapper) => classOf(wrapper) ?? []);
}
