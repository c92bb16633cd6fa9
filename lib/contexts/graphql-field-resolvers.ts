import type { LoggerService } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';

/**
 * `@nestjs/graphql` metadata keys, read by name so the package stays an optional peer: a
 * `@ResolveField()` (or the older `@ResolveProperty()`) and a federation `@ResolveReference()`.
 */
const RESOLVE_PROPERTY = 'graphql:resolve_property';
const RESOLVE_REFERENCE = 'graphql:resolve_reference';
/** `GRAPHQL_MODULE_OPTIONS` of `@nestjs/graphql`: the options `GraphQLModule.forRoot(Async)` was given. */
const GRAPHQL_MODULE_OPTIONS = 'GqlModuleOptions';

/** How many handlers a bootstrap message names before it says "and N more". */
const NAMED_IN_MESSAGE = 5;

/** A field resolver and the effective rules of its nearest declaration. */
export interface FieldResolverRules {
  /** `Class.method`. */
  readonly name: string;
  readonly isPublic: boolean;
  readonly scopes: readonly string[] | undefined;
  /** Whatever it requires of a verified agent (scopes, claims, step-up, actors, …), compiled; undefined when nothing. */
  readonly requirement: object | undefined;
  /** `@RequireFreshness()`: its tokens must be introspected. */
  readonly freshness: boolean;
  /** It (or its class) has a `@Grant()`, whose interceptor Nest runs on field resolvers only on request. */
  readonly granted: boolean;
}

/**
 * Whether `handler` resolves a field of an object type (`@ResolveField()`, `@ResolveProperty()`) or a
 * federation entity (`@ResolveReference()`) rather than a root `Query`, `Mutation` or `Subscription`
 * field: Nest runs guards on those only when the GraphQL module asks for it.
 */
export function isFieldResolver(handler: object): boolean {
  return Reflect.getMetadata(RESOLVE_PROPERTY, handler) === true || Reflect.getMetadata(RESOLVE_REFERENCE, handler) === true;
}

/**
 * Field resolvers run without any guard unless `GraphQLModule.forRoot({ fieldResolverEnhancers:
 * ['guards'] })` (Nest's default leaves them out): a scope declared on one would never be checked,
 * and any query returning its parent type, `@Public()` ones included, would reach it. So, when that
 * option is off:
 * - a field resolver whose nearest declaration requires anything (`@RequireScopes()` and its
 *   `anyOf` / `fromArguments`, `@RequireClaims()`, `@RequireAuthentication()`, `@RequireActors()`,
 *   `@RequireFreshness()`, on it, its class or a base class) fails the bootstrap, naming it and the
 *   option: a declared rule never silently goes unenforced;
 * - undecorated ones (protected by default everywhere else) get one warning naming them: each is
 *   only as protected as the query that returns its parent. `@Public()` on a field resolver says it
 *   needs no token, and silences it.
 * - a field resolver with a `@Grant()` fails the bootstrap unless interceptors run there too
 *   (`fieldResolverEnhancers: ['guards', 'interceptors']`): its `@Access()` would have nothing.
 * Nothing is checked when the app has no GraphQL module.
 * @throws Error listing the scoped (or granted) field resolvers and the option that enforces them.
 */
export function checkFieldResolverGuards(fields: readonly FieldResolverRules[], discovery: DiscoveryService, logger: LoggerService): void {
  if (fields.length === 0) return;
  const options = discovery.getProviders().find((wrapper) => wrapper.token === GRAPHQL_MODULE_OPTIONS)?.instance as
    | { fieldResolverEnhancers?: readonly string[] }
    | undefined;
  if (options === undefined) return;
  const granted = fields.filter((field) => field.granted);
  if (granted.length > 0 && options.fieldResolverEnhancers?.includes('interceptors') !== true) {
    throw new Error(
      `Keycard: @Grant() on GraphQL field resolvers would never run: Nest runs interceptors on @ResolveField() / @ResolveReference() ` +
        `methods only with GraphQLModule.forRoot({ fieldResolverEnhancers: ['guards', 'interceptors'] }). ` +
        `Add it, or grant on the queries and mutations instead: ${named(granted.map((field) => field.name))}`,
    );
  }
  if (options.fieldResolverEnhancers?.includes('guards') === true) return;
  const required = fields.filter((field) => !field.isPublic && (field.requirement !== undefined || field.freshness));
  if (required.length > 0) {
    throw new Error(
      `Keycard: requirements on GraphQL field resolvers (@RequireScopes(), @RequireClaims(), @RequireAuthentication(), @RequireActors(), ` +
        `@RequireFreshness()) would not be enforced: Nest runs guards on @ResolveField() / @ResolveReference() ` +
        `methods only with GraphQLModule.forRoot({ fieldResolverEnhancers: ['guards'] }). ` +
        `Add that option, or require them on the queries instead: ${named(required.map(describeField))}`,
    );
  }
  const unguarded = fields.filter((field) => !field.isPublic);
  if (unguarded.length > 0) {
    logger.warn(
      `GraphQL field resolvers run without the Keycard guard (GraphQLModule 'fieldResolverEnhancers' lacks 'guards'): ` +
        `each is only as protected as the query returning its parent, a @Public() one included. ` +
        `Add fieldResolverEnhancers: ['guards'], or mark them @Public(): ${named(unguarded.map((field) => field.name))}`,
    );
  }
}

/** `Class.method`, with its scopes when it requires some (`Stats.revenue (stats:admin)`). */
function describeField(field: FieldResolverRules): string {
  return field.scopes === undefined ? field.name : `${field.name} (${field.scopes.join(' ')})`;
}

function named(names: readonly string[]): string {
  const shown = names.slice(0, NAMED_IN_MESSAGE).join(', ');
  return names.length > NAMED_IN_MESSAGE ? `${shown} and ${names.length - NAMED_IN_MESSAGE} more` : shown;
}
