import { describe, expect, it } from '@jest/globals';
import { SignedHeaders } from './signed-headers.js';

/** A new string object with the text of `text`, as each request's token is. */
const fresh = (text: string) => ` ${text}`.slice(1);

describe('SignedHeaders (a verified header text is decoded once)', () => {
  it('finds a kept text again from a new string, the last one found and any other; never a text it was not given', () => {
    const headers = new SignedHeaders();
    const a = { alg: 'RS256', kid: 'a' };
    const b = { alg: 'RS256', kid: 'b' };
    headers.remember('eyJhIjoxfQ', a);
    headers.remember('eyJiIjoxfQ', b);
    expect(headers.lookup(fresh('eyJhIjoxfQ'))).toBe(a);
    expect(headers.lookup(fresh('eyJhIjoxfQ'))).toBe(a);
    expect(headers.lookup(fresh('eyJiIjoxfQ'))).toBe(b);
    expect(headers.lookup(fresh('eyJhIjoxfR'))).toBeUndefined(); // one character differs
    expect(headers.lookup(fresh('eyJhIjoxfQ'))).toBe(a);
  });

  it('a text pushed out of the bounded map is not found again, even right after it was the last one found', () => {
    const headers = new SignedHeaders();
    headers.remember('first', { alg: 'RS256' });
    expect(headers.lookup(fresh('first'))).toBeDefined();
    for (let i = 0; i < 64; i++) headers.remember(`later${i}`, { alg: 'RS256', i });
    expect(headers.size).toBe(64);
    expect(headers.lookup(fresh('first'))).toBeUndefined();
  });
});
