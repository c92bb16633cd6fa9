import { describe, expect, it } from '@jest/globals';
import { InvalidRequestException } from './keycard.exceptions.js';
import { ProtectedResource } from './protected-resource.js';
import { chooseForPath, chooseForPattern } from './resource-choice.js';

const R = new ProtectedResource('https://api.example.com');
const ORDERS = new ProtectedResource('https://api.example.com/orders');
const ARCHIVE = new ProtectedResource('https://api.example.com/orders/archive');

describe('chooseForPattern (catalogue Q17)', () => {
  it('takes the longest covering resource, whatever the list order', () => {
    for (const list of [[R, ORDERS, ARCHIVE], [ARCHIVE, ORDERS, R], [ORDERS, ARCHIVE, R]]) {
      expect(chooseForPattern(list, '/orders/list/:id', false)).toBe(ORDERS);
      expect(chooseForPattern(list, '/orders/archive/:id', false)).toBe(ARCHIVE);
      expect(chooseForPattern(list, '/orders', false)).toBe(ORDERS);
      expect(chooseForPattern(list, '/admin', false)).toBe(R);
      expect(chooseForPattern(list, '/', false)).toBe(R);
    }
  });

  it('compares whole segments only', () => {
    expect(chooseForPattern([R, ORDERS], '/orders-archive/:id', false)).toBe(R);
    expect(chooseForPattern([R, ORDERS], '/ordersx', false)).toBe(R);
  });

  it('folds case only where the router does', () => {
    expect(chooseForPattern([R, ORDERS], '/Orders/:id', true)).toBe(ORDERS);
    expect(chooseForPattern([R, ORDERS], '/Orders/:id', false)).toBe(R);
  });

  it('answers null when no resource covers the route (M8)', () => {
    expect(chooseForPattern([ORDERS], '/admin', false)).toBeNull();
    expect(chooseForPattern([ORDERS], '/', false)).toBeNull();
  });

  it('leaves the choice to the request when a parameter sits where a resource path is compared', () => {
    // The longest resource sure to cover the route comes first, then the deeper ones that may.
    expect(chooseForPattern([R, ORDERS], '/:collection/:id', false)).toEqual([R, ORDERS]);
    expect(chooseForPattern([ARCHIVE, R, ORDERS], '/orders/:id', false)).toEqual([ORDERS, ARCHIVE]);
    expect(chooseForPattern([ORDERS], '/*path', false)).toEqual([ORDERS]);
    expect(chooseForPattern([R, ORDERS], '/{*path}', false)).toEqual([R, ORDERS]);
  });
});

describe('chooseForPath (catalogue Q17, M7)', () => {
  it('decodes segments and ignores query and fragment', () => {
    expect(chooseForPath([R, ORDERS], '/%6frders/1', false)).toBe(ORDERS);
    expect(chooseForPath([R, ORDERS], '/orders/1?x=/admin', false)).toBe(ORDERS);
    expect(chooseForPath([R, ORDERS], '/orders#/admin', false)).toBe(ORDERS);
    expect(chooseForPath([R, ORDERS], '/admin?/orders', false)).toBe(R);
    expect(chooseForPath([R, ORDERS], '/', false)).toBe(R);
    expect(chooseForPath([R, ORDERS], '/orders/', false)).toBe(ORDERS);
  });

  it('folds case only where the router does', () => {
    expect(chooseForPath([R, ORDERS], '/ORDERS/1', true)).toBe(ORDERS);
    expect(chooseForPath([R, ORDERS], '/ORDERS/1', false)).toBe(R);
  });

  it('answers undefined when no candidate covers the path', () => {
    expect(chooseForPath([ORDERS], '/admin', false)).toBeUndefined();
  });

  it.each(['/./orders/1', '/admin/../orders/1', '/orders//1', '/%2e/orders/1', '/%2E%2E/orders', '/orders%2F1', '/orders%2f', '/orders%5C1'])(
    'refuses %s: routers disagree on dot and empty segments and on encoded slashes',
    (path) => {
      expect(() => chooseForPath([R, ORDERS], path, false)).toThrow(InvalidRequestException);
    },
  );
});
