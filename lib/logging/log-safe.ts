/**
 * Values a client or a zone chose, made safe to print in a text log line or an error message
 * (CWE-117, log injection). Token claims (`client_id` of a dynamically registered client, a
 * self-chosen `sub`), request paths, GraphQL and WebSocket names, zone documents and headers may
 * hold a CR/LF that forges a second log line, an ESC or C1 sequence that drives the operator's
 * terminal, or a bidi control that makes a line read differently from what it holds (Trojan Source,
 * CVE-2021-42574). Only refusal and diagnostic paths call these helpers, never a guard's success path.
 */

/**
 * C0 controls (CR, LF, TAB, ESC …), DEL, C1 controls (NEL U+0085, CSI U+009B …), the line and
 * paragraph separators U+2028/U+2029, and the bidi controls: ALM U+061C, LRM/RLM U+200E/U+200F,
 * LRE…RLO U+202A–U+202E, LRI…PDI U+2066–U+2069.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Characters of one value shown in a log line before it is cut with `…`: room for a URL-shaped
 * `client_id` or a long route, while a 100 KB `sub` costs a log line no more than this (log flooding).
 */
export const LOG_VALUE_MAX_LENGTH = 256;

/**
 * Characters of a whole error message shown in a log line: messages are built from fixed text and
 * capped values, but the error may come from a library or an app.
 */
export const LOG_MESSAGE_MAX_LENGTH = 1024;

/** `\n`, `\r`, `\t`, else `\u001b`-style: visible, and the same spelling JSON uses. */
function escaped(char: string): string {
  return NAMED[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * `value` as one line of visible characters: every character of {@link UNSAFE} as an escape
 * (`\n`, `\u202e`), and at most `max` characters (escapes included, never split) before `…`.
 * Ordinary text, non-ASCII names included, comes back unchanged (one regex test, no copy).
 *
 * A backslash is kept as it is (`DOMAIN\user` stays readable), so a value that spells `\n` itself
 * reads like an escaped newline; what matters here holds all the same: one line, nothing raw. It
 * also makes the function idempotent: a message built from escaped values can be escaped again.
 */
export function logSafe(value: unknown, max = LOG_VALUE_MAX_LENGTH): string {
  const text = typeof value === 'string' ? value : String(value);
  if (text.length <= max && !UNSAFE.test(text)) return text;
  let shown = '';
  // By code point, so a surrogate pair is never cut in half; stops at `max`, however long `text` is.
  for (const char of text) {
    const part = char.length === 1 && UNSAFE.test(char) ? escaped(char) : char;
    if (shown.length + part.length > max) return `${shown}…`;
    shown += part;
  }
  return shown;
}

/**
 * `value` cut to `max` characters (then `…`), not escaped: for the fields of a structured record,
 * which a JSON logger encodes itself. `undefined` stays `undefined`.
 */
export function logCapped<T extends string | undefined>(value: T, max = LOG_VALUE_MAX_LENGTH): T {
  if (value === undefined || value.length <= max) return value;
  const cut = value.charCodeAt(max - 1) >= 0xd800 && value.charCodeAt(max - 1) <= 0xdbff ? max - 1 : max;
  return `${value.slice(0, cut)}…` as T;
}

/**
 * `JSON.stringify(value)` with the characters JSON leaves raw (DEL, C1, U+2028/2029, bidi) as
 * `\uXXXX` escapes too: still valid JSON that parses back to the same value, and one plain line.
 */
export function logSafeJson(value: unknown): string {
  const json = JSON.stringify(value) ?? 'undefined';
  return UNSAFE.test(json) ? json.replace(UNSAFE_ALL, escaped) : json;
}
