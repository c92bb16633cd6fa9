import { describe, expect, it } from '@jest/globals';
import { frozenAudience, frozenStrings, frozenWords } from './frozen-lists.js';

describe('frozen lists shared by agents whose tokens carry the same text', () => {
  it('scope words: frozen, empty words dropped, the same array for the same text and a new one for another', () => {
    const read = frozenWords('read write');
    expect(read).toEqual(['read', 'write']);
    expect(Object.isFrozen(read)).toBe(true);
    expect(frozenWords(` read write`.slice(1))).toBe(read);
    expect(frozenWords(' read  write ')).toEqual(['read', 'write']);
    expect(frozenWords('read')).toEqual(['read']);
    expect(frozenWords('')).toEqual([]);
    expect(() => (read as string[]).push('admin')).toThrow(TypeError);
  });

  it('audience: a string is a frozen list of one, shared; an array is copied and frozen', () => {
    const one = frozenAudience('https://api.example.com');
    expect(one).toEqual(['https://api.example.com']);
    expect(frozenAudience('https://api.example.com')).toBe(one);
    const list = ['a', 'b'];
    const copy = frozenAudience(list);
    expect(copy).toEqual(['a', 'b']);
    expect(copy).not.toBe(list);
    expect(Object.isFrozen(copy)).toBe(true);
    expect(frozenStrings(['x', '', 3, 'y'])).toEqual(['x', 'y']);
  });
});
