import { describe, expect, it } from '@jest/globals';
import { SystemClock } from '../clock.js';
import { AuthenticationCheck } from '../decision/policy/authentication-check.js';
import { compileActors, compileClaims } from '../decision/policy/claim-check.js';
import { RequireAuthentication } from './require-authentication.decorator.js';
import { RequireActors, RequireClaims } from './require-claims.decorator.js';

/**
 * A requirement that requires nothing must not decorate: on a method it would replace the class's
 * requirement of the same kind with none, silently (an attack trial of the policies: as
 * `@RequireScopes()` with no scope).
 */
describe('policy decorators refuse a requirement that requires nothing, at decoration', () => {
  it.each([
    [() => RequireAuthentication({}), '@RequireAuthentication: give acr, maxAge or both'],
    [() => RequireAuthentication({ acr: undefined, maxAge: undefined }), '@RequireAuthentication: give acr, maxAge or both'],
    [() => RequireAuthentication({ maxage: 300 } as never), "@RequireAuthentication: 'maxage' is not an option: did you mean 'maxAge'?"],
    [() => RequireAuthentication(null as never), '@RequireAuthentication: give an object { acr?, maxAge? }'],
    [() => RequireAuthentication({ acr: [] }), '@RequireAuthentication: acr must list at least one value without spaces or quotes'],
    [() => RequireAuthentication({ maxAge: -1 }), '@RequireAuthentication: maxAge must be a whole number of seconds ≥ 0'],
    [() => RequireClaims({}), '@RequireClaims: give at least one claim'],
    // An object literal's `__proto__:` sets the prototype: no claim at all.
    [() => RequireClaims({ __proto__: { includes: 'admin' } } as never), '@RequireClaims: give at least one claim'],
    [() => RequireClaims(null as never), '@RequireClaims: give an object of claim predicates'],
    [() => RequireClaims({ roles: { include: 'admin' } } as never), "@RequireClaims: claim 'roles' needs { includes }, { equals } or { oneOf: [...] }"],
    [() => RequireClaims({ roles: { includes: 'admin', equals: 'root' } } as never), "@RequireClaims: claim 'roles' needs { includes }, { equals } or { oneOf: [...] }"],
    [() => RequireClaims({ tenant: { oneOf: [] } }), "@RequireClaims: claim 'tenant' needs { includes }, { equals } or { oneOf: [...] }"],
    [() => RequireActors({}), '@RequireActors: give maxDepth, allowed or both'],
    [() => RequireActors({ maxdepth: 1 } as never), "@RequireActors: 'maxdepth' is not an option: did you mean 'maxDepth'?"],
    [() => RequireActors({ allowed: [] }), '@RequireActors: allowed must list at least one actor sub'],
  ])('%#: %s', (decorate, message) => {
    expect(decorate).toThrow(TypeError);
    expect(decorate).toThrow(message);
  });

  it('accepts requirements that require something', () => {
    expect(() => RequireAuthentication({ acr: ['urn:kc:mfa'] })).not.toThrow();
    expect(() => RequireAuthentication({ maxAge: 0 })).not.toThrow();
    expect(() => RequireClaims({ roles: { includes: 'admin' }, tenant: { equals: 'acme' }, tier: { oneOf: [1, 2] } })).not.toThrow();
    expect(() => RequireActors({ maxDepth: 0 })).not.toThrow();
    expect(() => RequireActors({ allowed: ['agent-b'] })).not.toThrow();
  });
});

describe('the bootstrap refuses the same requirements when the metadata was set by hand', () => {
  it.each([
    [() => compileClaims({}, 'Api.get'), 'KeycardModule: @RequireClaims() on Api.get: give at least one claim'],
    [() => compileActors({}, 'Api.get'), 'KeycardModule: @RequireActors() on Api.get: give maxDepth, allowed or both'],
    [() => new AuthenticationCheck({}, { clock: new SystemClock(), leewaySeconds: 60 }, 'Api.get'), 'KeycardModule: @RequireAuthentication() on Api.get: give acr, maxAge or both'],
  ])('%#', (compile, message) => {
    expect(compile).toThrow(message);
  });
});
