/**
 * The frozen lists of an agent (`scopes`, `audience`) made from the text its token carries, shared
 * by agents whose tokens carry the same text: the tokens of one agent, and of one resource, repeat
 * the same `scope` and `aud` from one token to the next, so splitting and freezing them again for
 * every token is work for nothing (issue 24: a new token per agent action). A list is frozen, so
 * sharing it between agents lets none change another's. One entry each, the text seen last.
 * @internal
 */

/** One text and the frozen list made from it. */
interface Last {
  text: string | undefined;
  list: readonly string[];
}

/** The one frozen empty list. */
export const NO_WORDS: readonly string[] = Object.freeze([]);
const lastWords: Last = { text: undefined, list: NO_WORDS };
const lastAudience: Last = { text: undefined, list: NO_WORDS };

/** The words of a space-delimited list (RFC 6749 §3.3: `scope`), empty ones dropped, frozen. */
export function frozenWords(text: string): readonly string[] {
  if (text === lastWords.text) return lastWords.list;
  const words = text.split(' ');
  const list = Object.freeze(words.includes('') ? words.filter((word) => word.length > 0) : words);
  lastWords.text = text;
  lastWords.list = list;
  return list;
}

/** `aud` as a frozen array (RFC 7519 §4.1.3: a string is an audience of one). */
export function frozenAudience(aud: string | readonly string[]): readonly string[] {
  if (typeof aud !== 'string') return Object.freeze([...aud]);
  if (aud === lastAudience.text) return lastAudience.list;
  const list = Object.freeze([aud]);
  lastAudience.text = aud;
  lastAudience.list = list;
  return list;
}

/** A frozen copy of `list` (a `scp` array), its non-string and empty members dropped. */
export function frozenStrings(list: readonly unknown[]): readonly string[] {
  return Object.freeze(list.filter((item): item is string => typeof item === 'string' && item.length > 0));
}
