import type { DiscoveryService } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { KEYCARD_PUBLIC, KEYCARD_SCOPES } from '../keycard.constants.js';
import {
  KEYCARD_ACTORS, KEYCARD_ARGUMENT_SCOPES, KEYCARD_AUTHENTICATION, KEYCARD_CLAIMS, KEYCARD_OPTIONAL, KEYCARD_SCOPE_PATHS,
} from '../decision/policy/policy-metadata.js';
import type { Declared } from '../decision/policy/requirement.js';

/** Where a declaration is read: a handler method or a class. */
export type Target = object;
/** A controller or provider class whose methods may be handlers. */
export type Class = abstract new (...args: never[]) => unknown;

/** A declaration found on one target: a method or a class. */
export interface Declaration {
  readonly isPublic: boolean;
  readonly optional: boolean;
  /** The target it was found on (the handler or a class); undefined when none declares anything. */
  readonly target: Target | undefined;
}

const NOT_DECLARED: Declaration = { isPublic: false, optional: false, target: undefined };

/** The policy decorators other than `@Public()` / `@OptionalAuth()`, by metadata key: any of them declares a requirement. */
const REQUIREMENT_DECORATORS: readonly (readonly [key: string, name: string])[] = [
  [KEYCARD_SCOPES, '@RequireScopes()'],
  [KEYCARD_SCOPE_PATHS, '@RequireScopes.anyOf()'],
  [KEYCARD_ARGUMENT_SCOPES, '@RequireScopes.fromArguments()'],
  [KEYCARD_CLAIMS, '@RequireClaims()'],
  [KEYCARD_AUTHENTICATION, '@RequireAuthentication()'],
  [KEYCARD_ACTORS, '@RequireActors()'],
];

/**
 * The nearest declaration of a handler: its method, then its class and each base class in turn
 * (catalogue Q13). Reads metadata only and remembers nothing, so it is safe before the app's
 * `init()` (the OpenAPI description reads it then; the guard's registry caches what it computes).
 * @throws Error when one target declares two of `@Public()`, `@OptionalAuth()` and a requirement.
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
 * What one target (a method or a class) declares: `@Public()`, `@OptionalAuth()`, or a requirement
 * (any policy decorator).
 * @throws Error naming `where` when two of them are declared on the same target (catalogue Q13, T16).
 */
export function declarationOn(target: Target, where: string): Declaration | undefined {
  const isPublic = Reflect.getOwnMetadata(KEYCARD_PUBLIC, target) === true;
  const optional = Reflect.getOwnMetadata(KEYCARD_OPTIONAL, target) === true;
  const requirement = REQUIREMENT_DECORATORS.find(([key]) => Reflect.getOwnMetadata(key, target) !== undefined)?.[1];
  const opener = isPublic ? '@Public()' : optional ? '@OptionalAuth()' : undefined;
  const contradiction = isPublic && optional ? '@Public() and @OptionalAuth() are' : requirement !== undefined && opener !== undefined ? `${opener} and ${requirement} are` : undefined;
  if (contradiction !== undefined) {
    throw new Error(
      `KeycardModule: ${contradiction} both declared on ${where}; keep one ` +
        '(the nearest declaration wins: method over class, subclass over base class)',
    );
  }
  return isPublic || optional || requirement !== undefined ? { isPublic, optional, target } : undefined;
}

/** Each policy decorator's nearest declaration: the handler's own, else its class's, else each base class's. */
export function requirementOf(handler: Target, type: Target): Declared {
  const nearest = <T>(key: string): T | undefined => {
    const own = Reflect.getOwnMetadata(key, handler) as T | undefined;
    if (own !== undefined) return own;
    for (let base: unknown = type; typeof base === 'function' && base !== Function.prototype; base = Object.getPrototypeOf(base)) {
      if (Reflect.getOwnMetadata(KEYCARD_PUBLIC, base) === true || Reflect.getOwnMetadata(KEYCARD_OPTIONAL, base) === true) return undefined;
      const onClass = Reflect.getOwnMetadata(key, base as Target) as T | undefined;
      if (onClass !== undefined) return onClass;
    }
    return undefined;
  };
  return {
    scopes: nearest(KEYCARD_SCOPES),
    anyOf: nearest(KEYCARD_SCOPE_PATHS),
    fromArguments: nearest(KEYCARD_ARGUMENT_SCOPES),
    claims: nearest(KEYCARD_CLAIMS),
    authentication: nearest(KEYCARD_AUTHENTICATION),
    actors: nearest(KEYCARD_ACTORS),
  };
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
