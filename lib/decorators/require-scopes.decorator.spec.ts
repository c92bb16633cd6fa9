import { describe, expect, it } from '@jest/globals';
import { RequireScopes } from './require-scopes.decorator.js';

describe('@RequireScopes() at decoration', () => {
  it('refuses an empty list: on a method it would lift the controller\'s scopes, silently (an attack trial of the policies)', () => {
    expect(() => RequireScopes()).toThrow(TypeError);
    expect(() => RequireScopes()).toThrow("@RequireScopes: give at least one scope");
  });

  it.each(['', 'a b', 'a"b', 'a\r\nb'])('refuses the scope %j', (scope) => {
    expect(() => RequireScopes(scope)).toThrow(`@RequireScopes: ${JSON.stringify(scope)} is not a valid scope`);
  });

  it('accepts scope-tokens, each once', () => {
    expect(() => RequireScopes('orders:read', 'orders:read', 'orders:write')).not.toThrow();
  });
});
