const FORM_CONTENT_TYPE = /^application\/x-www-form-urlencoded\s*(?:;.*)?$/i;
/** A `%` not followed by two hex digits: URLSearchParams would keep it literally, RFC 3986 §2.1 forbids it. */
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;

/**
 * The parameters of a token request body (RFC 6749 §3.2 and Appendix B), read strictly: the body
 * must be `application/x-www-form-urlencoded`, every name and value well percent-encoded UTF-8,
 * and no parameter may appear twice (§3.2 "MUST NOT be included more than once"; the test zone
 * takes one `resource` per request).
 * @returns the parameters by name, or undefined when the body is none of that (the zone answers
 * 400 `invalid_request`).
 */
export function parseTokenForm(contentType: string | undefined, body: string): Record<string, string> | undefined {
  if (!FORM_CONTENT_TYPE.test(contentType ?? '')) return undefined;
  const form = new Map<string, string>();
  for (const pair of body.split('&')) {
    if (pair === '') continue;
    const end = pair.includes('=') ? pair.indexOf('=') : pair.length;
    const name = tryFormDecode(pair.slice(0, end));
    const value = tryFormDecode(pair.slice(end + 1));
    if (name === undefined || value === undefined || form.has(name)) return undefined;
    form.set(name, value);
  }
  // fromEntries defines own properties, so a `__proto__` parameter stays a plain parameter.
  return Object.fromEntries(form);
}

/**
 * One form-encoded name or value (also the encoding of `client_secret_basic` credentials, RFC 6749
 * §2.3.1). Returns undefined when it is not well percent-encoded UTF-8.
 */
export function tryFormDecode(value: string): string | undefined {
  if (BAD_PERCENT.test(value)) return undefined;
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return undefined; // URIError: the escapes spell invalid UTF-8 (e.g. %E0%A4 cut short)
  }
}
