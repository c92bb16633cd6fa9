import { describe, expect, it } from '@jest/globals';
import { LOG_VALUE_MAX_LENGTH, logCapped, logSafe, logSafeJson } from './log-safe.js';

/** Every character a log line must never hold raw (CWE-117). */
const C0 = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i));
const C1 = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i));
const SEPARATORS = ['\u2028', '\u2029'];
const BIDI = ['\u061c', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'];
const UNSAFE = [...C0, '\u007f', ...C1, ...SEPARATORS, ...BIDI];
const RAW = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('logSafe', () => {
  it('shows CR, LF and TAB as \\r, \\n, \\t', () => {
    expect(logSafe('agent-a\n[Nest] 1 - FAKE LOG admin granted')).toBe('agent-a\\n[Nest] 1 - FAKE LOG admin granted');
    expect(logSafe('a\r\nb\tc')).toBe('a\\r\\nb\\tc');
  });

  it.each(UNSAFE.map((char) => [char.charCodeAt(0).toString(16).padStart(4, '0'), char]))('shows U+%s as a visible escape', (hex, char) => {
    const shown = logSafe(`x${char}y`);
    expect(shown).not.toMatch(RAW);
    expect(shown).toBe(`x${{ '\n': '\\n', '\r': '\\r', '\t': '\\t' }[char] ?? `\\u${hex}`}y`);
  });

  it('escapes ESC, DEL, NEL and CSI, and the bidi override of the tester’s sub', () => {
    expect(logSafe('alice\x1b[31mRED\u202eevil\r\nINJECTED')).toBe('alice\\u001b[31mRED\\u202eevil\\r\\nINJECTED');
    expect(logSafe('a\x7fb\x85c\x9bd')).toBe('a\\u007fb\\u0085c\\u009bd');
  });

  it('leaves ordinary ASCII and Unicode names as they are', () => {
    for (const name of ['alice', 'agent-a', 'https://agents.example/cimd.json', 'Zoë Ødegård', '张伟', 'محمد', 'DOMAIN\\user', '👩‍💻 dev', 'a b', '']) {
      expect(logSafe(name)).toBe(name);
    }
    const ordinary = 'x'.repeat(LOG_VALUE_MAX_LENGTH);
    expect(logSafe(ordinary)).toBe(ordinary);
  });

  it('caps a long value at LOG_VALUE_MAX_LENGTH characters and an ellipsis', () => {
    const shown = logSafe('s'.repeat(100_000));
    expect(shown).toBe(`${'s'.repeat(LOG_VALUE_MAX_LENGTH)}…`);
    expect(logSafe('abcdef', 3)).toBe('abc…');
  });

  it('counts escapes in the cap and never cuts one or a surrogate pair in half', () => {
    expect(logSafe('\n'.repeat(10_000)).length).toBeLessThanOrEqual(LOG_VALUE_MAX_LENGTH + 1);
    expect(logSafe('ab\u202ecd', 7)).toBe('ab…');
    expect(logSafe('ab\u202ecd', 8)).toBe('ab\\u202e…');
    expect(logSafe('a😀b', 2)).toBe('a…');
    expect(logSafe('a😀b', 3)).toBe('a😀…');
  });

  it('is idempotent: an escaped message can be escaped again', () => {
    const once = logSafe('alice\x1b[31m\u202e\r\n');
    expect(logSafe(once)).toBe(once);
  });

  it('prints other values as String() does', () => {
    expect(logSafe(undefined)).toBe('undefined');
    expect(logSafe(42)).toBe('42');
  });
});

describe('logSafeJson', () => {
  it('is JSON of the same value, with DEL, C1, U+2028/2029 and bidi controls escaped too', () => {
    const record = { user: `alice\x1b[31mRED\u202eevil\r\nINJECTED${UNSAFE.join('')}`, agent: 'Zoë' };
    const json = logSafeJson(record);
    expect(json).not.toMatch(RAW);
    expect(JSON.parse(json)).toEqual(record);
    expect(json).toContain('Zoë');
  });

  it('is JSON.stringify for ordinary values', () => {
    expect(logSafeJson({ a: 'b', n: 1 })).toBe('{"a":"b","n":1}');
  });
});

describe('logCapped', () => {
  it('cuts a long value with an ellipsis, never inside a surrogate pair, and keeps short values and undefined', () => {
    expect(logCapped('u'.repeat(100_000))).toBe(`${'u'.repeat(LOG_VALUE_MAX_LENGTH)}…`);
    expect(logCapped('a😀', 2)).toBe('a…');
    expect(logCapped('alice\n')).toBe('alice\n');
    expect(logCapped(undefined)).toBeUndefined();
  });
});
