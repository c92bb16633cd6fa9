import { describe, expect, it } from '@jest/globals';
import { ScopeHierarchy } from './scope-hierarchy.js';
import { ScopeSet } from './scope-set.js';
import { Verdict } from './verdict.js';

const hierarchy = ScopeHierarchy.compile({ 'orders:admin': ['orders:read', 'orders:write'] });
const set = (...scopes: string[]) => new ScopeSet(scopes, hierarchy);

describe('Verdict: what the requirements of one call found', () => {
  it('gathers every needed scope once, in order, and is met only when all are held', () => {
    const verdict = new Verdict();
    verdict.require(set('orders:read'), ['orders:read', 'mcp:tools']);
    verdict.require(set('orders:read', 'mcp:tools'), ['orders:read', 'mcp:tools']);
    expect(verdict.needed).toEqual(['orders:read', 'mcp:tools']);
    expect(verdict.grants).toEqual(['orders:read', 'mcp:tools']);
    expect(verdict.met).toBe(true);
    verdict.require(set('orders:write'), ['orders:read', 'mcp:tools']);
    expect(verdict.needed).toEqual(['orders:read', 'mcp:tools', 'orders:write']);
    expect(verdict.met).toBe(false);
  });

  it('names the broader token scope that satisfied a scope through the hierarchy', () => {
    const verdict = new Verdict();
    verdict.require(set('orders:write'), ['orders:admin']);
    expect(verdict.needed).toEqual(['orders:write']);
    expect(verdict.grants).toEqual(['orders:admin']);
    expect(verdict.met).toBe(true);
  });

  it('keeps the first acr_values and the shorter max_age of two step-ups', () => {
    const verdict = new Verdict();
    verdict.requireStepUp(undefined);
    expect(verdict.met).toBe(true);
    verdict.requireStepUp({ maxAge: 600 });
    verdict.requireStepUp({ acrValues: 'phr', maxAge: 60 });
    expect(verdict.stepUp).toEqual({ acrValues: 'phr', maxAge: 60 });
    expect(verdict.met).toBe(false);
  });

  it('starts afresh after reset (one verdict serves every call in turn)', () => {
    const verdict = new Verdict();
    verdict.require(set('orders:write'), []);
    verdict.permissionMissing = true;
    verdict.requireStepUp({ maxAge: 1 });
    verdict.reset();
    expect(verdict).toMatchObject({ needed: [], held: true, grants: [], permissionMissing: false, stepUp: undefined });
  });
});
