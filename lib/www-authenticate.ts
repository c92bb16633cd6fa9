/**
 * One authentication challenge of a `WWW-Authenticate` field (RFC 9110 §11.2, §11.6.1).
 * @publicApi
 */
export interface AuthChallenge {
  /** The auth-scheme as sent; compare it case-insensitively (RFC 9110 §11.1). */
  readonly scheme: string;
  /** Auth-params by lower-cased name (names are case-insensitive, §11.2), values unquoted. */
  readonly params: ReadonlyMap<string, string>;
  /** The token68 form of credentials-style challenges (e.g. `Negotiate abc==`), when used instead of params. */
  readonly token68?: string;
}

/** RFC 9110 §5.6.2 tchar. */
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
/** RFC 9110 §11.2 token68 characters (before the trailing `=`s). */
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;
/** VCHAR / obs-text, HTAB and SP: what may follow a `\` in a quoted-pair (§5.6.4). */
const QUOTED_PAIR_CHAR = /[\t\x20-\x7E\x80-\xFF]/;
/** qdtext (§5.6.4). */
const QDTEXT = /[\t\x20\x21\x23-\x5B\x5D-\x7E\x80-\xFF]/;

/**
 * Parses a `WWW-Authenticate` field value — several challenges, as several header lines joined
 * with `,` (RFC 9110 §5.3) — per RFC 9110 §11: case-insensitive scheme and parameter names,
 * optional whitespace around `=` (BWS), token or quoted-string values with quoted-pairs, token68,
 * and empty list elements. Linear in the length of the value, no regular expression backtracking.
 *
 * @returns the challenges in order, or `undefined` when the value does not follow the grammar or a
 *   challenge repeats a parameter name (§11.2: "MUST only occur once per challenge").
 * @publicApi
 */
export function parseWwwAuthenticate(value: string): AuthChallenge[] | undefined {
  const challenges: AuthChallenge[] = [];
  const at = (i: number) => value[i] ?? '';
  const skipSpace = (i: number) => {
    while (at(i) === ' ' || at(i) === '\t') i++;
    return i;
  };
  const readToken = (i: number) => {
    let end = i;
    while (end < value.length && TCHAR.test(value[end])) end++;
    return end;
  };
  /** Reads a quoted-string starting at the `"` at `i`: its unquoted text and the index after it. */
  const readQuoted = (i: number): [string, number] | undefined => {
    let text = '';
    for (let j = i + 1; j < value.length; j++) {
      const c = value[j];
      if (c === '"') return [text, j + 1];
      if (c === '\\') {
        if (!QUOTED_PAIR_CHAR.test(at(j + 1))) return undefined;
        text += value[++j];
      } else if (QDTEXT.test(c)) {
        text += c;
      } else {
        return undefined;
      }
    }
    return undefined;
  };
  /** True when only whitespace stands between `i` and the end or the next list separator. */
  const endsElement = (i: number) => {
    const j = skipSpace(i);
    return j === value.length || value[j] === ',';
  };
  /** An auth-param at `i`: `token BWS "=" BWS ( token / quoted-string )`, ending its list element. */
  const readParam = (i: number): [string, string, number] | undefined => {
    const nameEnd = readToken(i);
    if (nameEnd === i) return undefined;
    let j = skipSpace(nameEnd);
    if (at(j) !== '=') return undefined;
    j = skipSpace(j + 1);
    let text: string;
    if (at(j) === '"') {
      const quoted = readQuoted(j);
      if (!quoted) return undefined;
      [text, j] = quoted;
    } else {
      const end = readToken(j);
      if (end === j) return undefined;
      text = value.slice(j, end);
      j = end;
    }
    return endsElement(j) ? [value.slice(i, nameEnd).toLowerCase(), text, j] : undefined;
  };
  /** A token68 at `i`, ending its list element. */
  const readToken68 = (i: number): [string, number] | undefined => {
    let j = i;
    while (j < value.length && TOKEN68_CHAR.test(value[j])) j++;
    if (j === i) return undefined;
    while (at(j) === '=') j++;
    return endsElement(j) ? [value.slice(i, j), j] : undefined;
  };
  /** True when a list element at `i` is an auth-param (`token BWS =`), not a new challenge. */
  const isParamStart = (i: number) => {
    const end = readToken(i);
    return end > i && at(skipSpace(end)) === '=';
  };
  /** Moves past OWS, commas and OWS: the separators of list elements (empty elements allowed, §5.6.1). */
  const skipSeparators = (i: number) => {
    let j = skipSpace(i);
    while (at(j) === ',') j = skipSpace(j + 1);
    return j;
  };

  let pos = skipSeparators(0);
  while (pos < value.length) {
    const schemeEnd = readToken(pos);
    if (schemeEnd === pos) return undefined;
    const scheme = value.slice(pos, schemeEnd);
    const params = new Map<string, string>();
    let token68: string | undefined;
    pos = schemeEnd;
    const afterScheme = skipSpace(pos);
    if (afterScheme > pos && afterScheme < value.length && value[afterScheme] !== ',') {
      // `scheme 1*SP ( token68 / #auth-param )`
      const param = readParam(afterScheme);
      if (param) {
        params.set(param[0], param[1]);
        pos = param[2];
        // Further elements belong to this challenge while they are auth-params (`name =`); an
        // element that starts with a token not followed by `=` is the next challenge's scheme.
        for (;;) {
          const next = skipSeparators(pos);
          if (next === value.length || !isParamStart(next)) break;
          const more = readParam(next);
          if (!more || params.has(more[0])) return undefined;
          params.set(more[0], more[1]);
          pos = more[2];
        }
      } else {
        const credentials = readToken68(afterScheme);
        if (!credentials) return undefined;
        [token68, pos] = credentials;
      }
    } else if (!endsElement(pos)) {
      return undefined;
    }
    challenges.push({ scheme, params, ...(token68 === undefined ? {} : { token68 }) });
    pos = skipSeparators(pos);
  }
  return challenges;
}

/**
 * The first challenge of `scheme` (case-insensitive) in a `WWW-Authenticate` value, or `undefined`
 * when there is none or the value is not valid (see {@link parseWwwAuthenticate}).
 * @publicApi
 */
export function findChallenge(value: string | null | undefined, scheme: string): AuthChallenge | undefined {
  if (typeof value !== 'string') return undefined;
  const wanted = scheme.toLowerCase();
  return parseWwwAuthenticate(value)?.find((challenge) => challenge.scheme.toLowerCase() === wanted);
}
