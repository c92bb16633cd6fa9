import { describe, expect, it } from '@jest/globals';
import { MAX_ACTOR_DEPTH } from '../../resource-server/access-token-rules.js';
import { actorsProblem } from './claim-check.js';

describe('@RequireActors() arguments (catalogue T29)', () => {
  it('a maxDepth the verification bound allows is accepted', () => {
    expect(actorsProblem({ maxDepth: MAX_ACTOR_DEPTH })).toBeUndefined();
    expect(actorsProblem({ maxDepth: 0 })).toBeUndefined();
  });

  it('a maxDepth above the bound every token is held to is refused: it could never apply', () => {
    expect(actorsProblem({ maxDepth: MAX_ACTOR_DEPTH + 1 })).toBe(
      `maxDepth ${MAX_ACTOR_DEPTH + 1} can never apply: a token whose act chain has more than ${MAX_ACTOR_DEPTH} links is refused as invalid before any policy`,
    );
  });
});
